/* The TLS transport, server side, end to end in one process: wsk servers on the loop in the
 * main thread, and a blocking mbedTLS client in a second thread that counts the records it
 * receives.
 *
 * Covered: loading certificates and keys (errors named in the log), the handshake (TLS 1.2,
 * modern suite, ALPN), echo of many sizes while the client does not read (partial writes and
 * the retry of a held record), records filled with many small frames, close_notify, client
 * certificates required / missing / from another CA, plaintext HTTP, garbage and a stalled
 * handshake costing one log line each, and a handshake whose flight does not fit the socket's
 * send buffer.  Certificates come from scripts/mkcerts (the test is skipped without openssl). */
#include "internal.h"
#include "io_tls.h"
#include "test.h"
#include "wskit.h"

#include <errno.h>
#include <ev.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char dir[256];

static const char *path(const char *name)
{
    static char buf[16][512];
    static int i;
    i = (i + 1) % 16;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

/* ----- the server's log, shared with the client thread ---------------------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_lines[64][512];
static int log_n;

static void log_capture(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    pthread_mutex_lock(&log_lock);
    if (log_n < 64) snprintf(log_lines[log_n++], sizeof log_lines[0], "%s", msg);
    pthread_mutex_unlock(&log_lock);
}

static void log_clear(void)
{
    pthread_mutex_lock(&log_lock);
    log_n = 0;
    pthread_mutex_unlock(&log_lock);
}

/* How many lines there are, and how many of them contain `needle`. */
static int log_count(const char *needle, int *total)
{
    int n = 0;
    pthread_mutex_lock(&log_lock);
    for (int i = 0; i < log_n; i++) {
        if (strstr(log_lines[i], needle))
            n++;
        else
            printf("# log: %s\n", log_lines[i]);
    }
    *total = log_n;
    pthread_mutex_unlock(&log_lock);
    return n;
}

/* Waits (up to 5 s) for the server to log a line containing `needle`. */
static int log_wait(const char *needle)
{
    int total;
    SPIN_UNTIL(log_count(needle, &total), usleep(10000));
    return log_count(needle, &total) > 0;
}

/* ----- the servers --------------------------------------------------------------------------- */

static atomic_int own_blocks; /* send blocks that were not from the loop's cache */

/* Echo, except "burst N": N small text messages sent at once, and "big N": N binary messages of
 * 16 KiB (byte i of message k is k + i). */
static void on_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    if (op == WSK_OP_TEXT && len == 8 && !memcmp(data, "records?", 8)) {
        const char *who = wsk_tls_records(ws);
        wsk_send(ws, who, strlen(who), WSK_OP_TEXT, 0);
        return;
    }
    if (op == WSK_OP_TEXT && len > 4 && !memcmp(data, "big ", 4)) {
        static uint8_t m[16384];
        int n = atoi((const char *)data + 4);
        for (int k = 0; k < n; k++) {
            for (size_t i = 0; i < sizeof m; i++) m[i] = (uint8_t)(k + i);
            wsk_send(ws, m, sizeof m, WSK_OP_BINARY, 0);
        }
        return;
    }
    if (op == WSK_OP_TEXT && len > 6 && !memcmp(data, "burst ", 6)) {
        char num[16], m[16];
        snprintf(num, sizeof num, "%.*s", (int)(len - 6), (const char *)data + 6);
        int n = atoi(num);
        for (int i = 0; i < n; i++) {
            snprintf(m, sizeof m, "b%05d", i);
            wsk_send(ws, m, 6, WSK_OP_TEXT, 0);
        }
        return;
    }
    wsk_send(ws, data, len, op, 0);
    /* A large echo goes to the queue in the loop's cached blocks, never one of its own size. */
    for (wsk_seg *q = ws->q.head; q; q = q->next) own_blocks += q->blk->cap != WSK_BLOCK_CACHED;
}

static wsk_server *server(wsk_loop *loop, const char *cert, const char *key, const char *pw,
                          const char *client_ca, unsigned handshake_timeout)
{
    wsk_server_opts o;
    wsk_server_opts_init(&o);
    o.tls_cert = cert;
    o.tls_key = key;
    o.tls_key_password = pw;
    o.tls_client_ca = client_ca;
    o.handshake_timeout = handshake_timeout;
    o.backpressure_limit = 256u << 20;
    wsk_handlers h = {.message = on_message};
    return wsk_server_new(loop, &o, &h, NULL);
}

/* ----- a blocking mbedTLS client ------------------------------------------------------------- */

struct tc {
    int fd;
    mbedtls_ssl_context ssl;
    mbedtls_ssl_config conf;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    const char *alpn[2];
    /* records received, counted from the raw bytes */
    uint8_t hdr[5];
    size_t hdr_len, rec_left;
    size_t app_records;
    int slow; /* small receive buffer, and a pause before the first read */
    int flip; /* flip a bit in the next application record sent */
};

static int tc_suite[2]; /* the one suite tc_open offers, when set */

static void count_records(struct tc *t, const uint8_t *p, size_t n)
{
    while (n) {
        if (t->rec_left) {
            size_t k = n < t->rec_left ? n : t->rec_left;
            t->rec_left -= k;
            p += k;
            n -= k;
            continue;
        }
        t->hdr[t->hdr_len++] = *p++;
        n--;
        if (t->hdr_len == 5) {
            if (t->hdr[0] == 23) t->app_records++;
            t->rec_left = (size_t)t->hdr[3] << 8 | t->hdr[4];
            t->hdr_len = 0;
        }
    }
}

static int tc_recv(void *arg, unsigned char *buf, size_t len)
{
    struct tc *t = arg;
    if (t->slow == 1) {
        t->slow = 2;
        usleep(300 * 1000);
    }
    ssize_t r = recv(t->fd, buf, len, 0);
    if (r > 0) count_records(t, buf, (size_t)r);
    if (r >= 0) return (int)r;
    return errno == ECONNRESET ? MBEDTLS_ERR_NET_CONN_RESET : MBEDTLS_ERR_NET_RECV_FAILED;
}

static int tc_send(void *arg, const unsigned char *buf, size_t len)
{
    struct tc *t = arg;
    uint8_t *bad = NULL;
    if (t->flip && buf[0] == 23 && len > 30 && (bad = malloc(len))) {
        memcpy(bad, buf, len);
        bad[len - 17] ^= 0x10; /* the last byte of ciphertext, before the 16-byte tag */
        buf = bad;
        t->flip = 0;
    }
    ssize_t r = send(t->fd, buf, len, MSG_NOSIGNAL);
    free(bad);
    return r >= 0 ? (int)r : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int tcp_connect(unsigned port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void tc_free(struct tc *t)
{
    mbedtls_ssl_free(&t->ssl);
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_x509_crt_free(&t->ca);
    mbedtls_x509_crt_free(&t->cert);
    mbedtls_pk_free(&t->key);
    mbedtls_ctr_drbg_free(&t->drbg);
    mbedtls_entropy_free(&t->entropy);
    if (t->fd >= 0) close(t->fd);
}

/* Connects and completes the handshake (verifying localhost against ca.crt); the mbedTLS result
 * of the handshake (0 on success). */
static int tc_open(struct tc *t, unsigned port, const char *cert, const char *key, int slow)
{
    memset(t, 0, sizeof *t);
    t->slow = slow;
    mbedtls_ssl_init(&t->ssl);
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_x509_crt_init(&t->ca);
    mbedtls_x509_crt_init(&t->cert);
    mbedtls_pk_init(&t->key);
    mbedtls_ctr_drbg_init(&t->drbg);
    mbedtls_entropy_init(&t->entropy);
    t->fd = -1;
    t->alpn[0] = "http/1.1";
    if (mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy, NULL, 0) ||
        mbedtls_ssl_config_defaults(&t->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) ||
        mbedtls_x509_crt_parse_file(&t->ca, path("ca.crt")))
        return -1;
    mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
    mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
    mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_alpn_protocols(&t->conf, t->alpn);
    if (tc_suite[0]) mbedtls_ssl_conf_ciphersuites(&t->conf, tc_suite);
    if (cert && (mbedtls_x509_crt_parse_file(&t->cert, cert) ||
                 mbedtls_pk_parse_keyfile(&t->key, key, NULL) ||
                 mbedtls_ssl_conf_own_cert(&t->conf, &t->cert, &t->key)))
        return -1;
    if (mbedtls_ssl_setup(&t->ssl, &t->conf) || mbedtls_ssl_set_hostname(&t->ssl, "localhost"))
        return -1;
    t->fd = tcp_connect(port, slow ? 1024 : 0);
    if (t->fd < 0) return -1;
    mbedtls_ssl_set_bio(&t->ssl, t, tc_send, tc_recv, NULL);
    int r = mbedtls_ssl_handshake(&t->ssl);
    if (slow) {
        /* The tiny window served the handshake; echoes through it could meet the kernel's
         * zero-window probe backoff, which is not what is tested. */
        int sz = 256 * 1024;
        setsockopt(t->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    return r;
}

static int tc_write(struct tc *t, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n) {
        int r = mbedtls_ssl_write(&t->ssl, b, n);
        if (r <= 0) return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int tc_read(struct tc *t, void *p, size_t n)
{
    uint8_t *b = p;
    while (n) {
        int r = mbedtls_ssl_read(&t->ssl, b, n);
        if (r <= 0) {
            printf("# read: -0x%04x (errno %d)\n", (unsigned)-r, errno);
            return r ? r : -1;
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static int tc_upgrade(struct tc *t)
{
    static const char req[] =
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n";
    char head[1024];
    size_t n = 0;
    if (tc_write(t, req, sizeof req - 1)) return -1;
    while (n < sizeof head - 1) {
        if (tc_read(t, head + n, 1)) return -1;
        n++;
        if (n >= 4 && !memcmp(head + n - 4, "\r\n\r\n", 4)) break;
    }
    head[n] = 0;
    return strncmp(head, "HTTP/1.1 101", 12) ? -1 : 0;
}

/* Sends one masked frame. */
static int tc_frame(struct tc *t, unsigned op, const void *data, size_t len)
{
    uint8_t *f = malloc(len + 14);
    size_t h = 0;
    f[h++] = (uint8_t)(0x80 | op);
    if (len < 126) {
        f[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        f[h++] = 0x80 | 126;
        f[h++] = (uint8_t)(len >> 8);
        f[h++] = (uint8_t)len;
    } else {
        f[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) f[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(f + h, key, 4);
    h += 4;
    for (size_t i = 0; i < len; i++) f[h + i] = ((const uint8_t *)data)[i] ^ key[i & 3];
    int r = tc_write(t, f, h + len);
    free(f);
    return r;
}

/* Reads one unmasked frame into a malloc'd buffer; its opcode, or -1. */
static int tc_next(struct tc *t, uint8_t **data, size_t *len)
{
    uint8_t h[8];
    if (tc_read(t, h, 2)) return -1;
    int op = h[0] & 0x0f;
    uint64_t n = h[1] & 0x7f;
    if (n == 126) {
        if (tc_read(t, h, 2)) return -1;
        n = (uint64_t)h[0] << 8 | h[1];
    } else if (n == 127) {
        if (tc_read(t, h, 8)) return -1;
        n = 0;
        for (int i = 0; i < 8; i++) n = n << 8 | h[i];
    }
    *data = malloc(n + 1);
    *len = (size_t)n;
    if (n && tc_read(t, *data, (size_t)n)) {
        free(*data);
        return -1;
    }
    return op;
}

/* ----- scenarios (client thread) ------------------------------------------------------------- */

static unsigned port_main, port_auth, port_small, port_stall, port_mbed;

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

/* Sends `count` binary messages of varied sizes (up to max) without reading, then reads the
 * echoes and compares them: the server's writes hit a full socket many times meanwhile. */
static int echo_sizes(struct tc *t, int count, size_t max, int pause_ms)
{
    uint8_t *buf = malloc(max);
    int ok = 1;
    uint32_t x = 7;
    for (int i = 0; i < count && ok; i++) {
        x = x * 1103515245u + 12345u;
        size_t n = (x >> 8) % max;
        fill(buf, n, (unsigned)i);
        ok = tc_frame(t, WSK_OP_BINARY, buf, n) == 0;
    }
    usleep((useconds_t)pause_ms * 1000);
    x = 7;
    for (int i = 0; i < count && ok; i++) {
        x = x * 1103515245u + 12345u;
        size_t n = (x >> 8) % max;
        fill(buf, n, (unsigned)i);
        uint8_t *got;
        size_t len;
        int op = tc_next(t, &got, &len);
        ok = EXPECT(op == WSK_OP_BINARY && len == n && !memcmp(got, buf, n),
                    "message %d: op %d, %zu bytes (sent %zu)", i, op, op < 0 ? 0 : len, n);
        if (op >= 0) free(got);
    }
    free(buf);
    return ok;
}

static void main_server(void)
{
    struct tc t;
    int r = tc_open(&t, port_main, NULL, NULL, 0);
    char why[128] = "";
    if (r) mbedtls_strerror(r, why, sizeof why);
    CHECK(r == 0, "handshake with the server (%s)", why);
    if (r) {
        tc_free(&t);
        return;
    }
    const char *alpn = mbedtls_ssl_get_alpn_protocol(&t.ssl);
    const char *suite = mbedtls_ssl_get_ciphersuite(&t.ssl);
    CHECK(!strcmp(mbedtls_ssl_get_version(&t.ssl), "TLSv1.2"), "TLS 1.2");
    CHECK(strstr(suite, "ECDHE") && (strstr(suite, "GCM") || strstr(suite, "CHACHA20")),
          "an ECDHE + AEAD suite: %s", suite);
    CHECK(alpn && !strcmp(alpn, "http/1.1"), "ALPN http/1.1");
    CHECK(tc_upgrade(&t) == 0, "WebSocket upgrade over TLS");

    uint8_t *got;
    size_t len;
    int op = tc_frame(&t, WSK_OP_TEXT, "hello", 5) ? -1 : tc_next(&t, &got, &len);
    CHECK(op == WSK_OP_TEXT && len == 5 && !memcmp(got, "hello", 5), "echo over wss");
    if (op >= 0) free(got);

    /* 2000 frames of 8 bytes sent in one loop turn: 16000 bytes fit in one or two records. */
    t.app_records = 0;
    int ok = tc_frame(&t, WSK_OP_TEXT, "burst 2000", 10) == 0;
    for (int i = 0; i < 2000 && ok; i++) {
        char want[8];
        snprintf(want, sizeof want, "b%05d", i);
        op = tc_next(&t, &got, &len);
        ok = EXPECT(op == WSK_OP_TEXT && len == 6 && !memcmp(got, want, 6), "burst message %d", i);
        if (op >= 0) free(got);
    }
    CHECK(ok, "2000 small messages arrive in order");
    CHECK(t.app_records <= 3, "records are filled: 2000 frames in %zu records", t.app_records);

    /* 4 frames of 16 KiB + 4 bytes, queued in one turn, one block each: records are filled
     * across the blocks (16 KiB each: 5 records), not cut at every block's end (8). */
    t.app_records = 0;
    ok = tc_frame(&t, WSK_OP_TEXT, "big 4", 5) == 0;
    for (int k = 0; k < 4 && ok; k++) {
        op = tc_next(&t, &got, &len);
        int same = op == WSK_OP_BINARY && len == 16384;
        for (size_t i = 0; same && i < len; i++) same = got[i] == (uint8_t)(k + i);
        ok = EXPECT(same, "16 KiB message %d", k);
        if (op >= 0) free(got);
    }
    CHECK(ok, "4 messages of 16 KiB arrive whole, in order");
    CHECK(t.app_records == 5, "records span blocks: 4 frames of 16 KiB in %zu records (5)",
          t.app_records);

    CHECK(echo_sizes(&t, 200, 70000, 200), "200 messages of 0-70000 bytes echoed while unread");
    CHECK(echo_sizes(&t, 3, 3u << 20, 300), "3 messages of up to 3 MiB echoed while unread");
    CHECK(own_blocks == 0, "the echoes were queued in cached blocks (%d others)", (int)own_blocks);

    /* Closing handshake: the server closes TCP after its close frame, with close_notify. */
    uint8_t code[2] = {0x03, 0xe8};
    op = tc_frame(&t, WSK_OP_CLOSE, code, 2) ? -1 : tc_next(&t, &got, &len);
    CHECK(op == WSK_OP_CLOSE, "the server answers the close frame");
    if (op >= 0) free(got);
    uint8_t b;
    r = mbedtls_ssl_read(&t.ssl, &b, 1);
    CHECK(r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY, "then sends close_notify (read: -0x%04x)", -r);
    tc_free(&t);
}

/* Sends raw bytes to the TLS port; 1 when the server closed the connection. */
static int raw_probe(unsigned port, const void *data, size_t len)
{
    int fd = tcp_connect(port, 0);
    if (fd < 0) return 0;
    if (len) send(fd, data, len, MSG_NOSIGNAL);
    char buf[256];
    ssize_t r;
    int closed = 0;
    for (int i = 0; i < 2 && !closed; i++) { /* the receive timeout is 10 s, twice at most */
        while ((r = recv(fd, buf, sizeof buf, 0)) > 0) {
        }
        closed = r == 0 || (r < 0 && errno == ECONNRESET);
    }
    close(fd);
    return closed;
}

static void bad_clients(void)
{
    int total;
    log_clear();
    static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    CHECK(raw_probe(port_main, http, sizeof http - 1), "plaintext HTTP: connection closed");
    log_wait("plaintext");
    CHECK(log_count("TLS handshake failed: plaintext HTTP on a TLS port", &total) == 1 &&
              total == 1,
          "plaintext HTTP costs one log line (%d)", total);

    log_clear();
    uint8_t junk[300];
    fill(junk, sizeof junk, 99);
    junk[0] = 0x07;
    CHECK(raw_probe(port_main, junk, sizeof junk), "garbage: connection closed");
    log_wait("not TLS");
    CHECK(log_count("TLS handshake failed: not TLS", &total) == 1 && total == 1,
          "garbage costs one log line (%d)", total);

    /* The start of a ClientHello record, then nothing: the handshake deadline ends it (2 s,
     * counted in whole seconds from the accept: between 1 and 2 s later). */
    log_clear();
    static const uint8_t part[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int closed = raw_probe(port_stall, part, sizeof part);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    CHECK(closed && secs < 4, "stalled handshake closed after %.1fs", secs);
    log_wait("timed out");
    CHECK(log_count("handshake timed out", &total) == 1 && total == 1,
          "a stalled handshake costs one log line (%d)", total);
}

static void client_certs(void)
{
    struct tc t;
    int total;
    log_clear();
    int r = tc_open(&t, port_auth, NULL, NULL, 0);
    /* TLS 1.2: the client finishes its side before it learns of the refusal. */
    if (r == 0) r = tc_upgrade(&t);
    tc_free(&t);
    CHECK(r != 0, "client certificate required: refused without one");
    log_wait("no certificate");
    CHECK(log_count("the client sent no certificate", &total) == 1 && total == 1,
          "one log line says why (%d)", total);

    log_clear();
    r = tc_open(&t, port_auth, path("server.crt"), path("server.key"), 0);
    if (r == 0) r = tc_upgrade(&t);
    tc_free(&t);
    CHECK(r != 0, "a client certificate from another CA is refused");
    log_wait("verify failed");
    CHECK(log_count("client certificate verify failed: unknown issuer", &total) == 1 && total == 1,
          "one log line says why (%d)", total);

    log_clear();
    r = tc_open(&t, port_auth, path("client.crt"), path("client.key"), 0);
    CHECK(r == 0, "client certificate accepted");
    uint8_t *got;
    size_t len;
    int op =
        r || tc_upgrade(&t) || tc_frame(&t, WSK_OP_TEXT, "cert", 4) ? -1 : tc_next(&t, &got, &len);
    CHECK(op == WSK_OP_TEXT && len == 4, "echo with a client certificate");
    if (op >= 0) free(got);
    tc_free(&t);
}

/* The server's send buffer holds 8 KiB, the client's receive buffer 2 KiB, and the client pauses
 * before its first read: the server's first flight (a chain of 30 certificates, about 14 KiB)
 * meets WANT_WRITE in the middle of the handshake, and so does every echo. */
static void small_buffer(void)
{
    struct tc t;
    int r = tc_open(&t, port_small, NULL, NULL, 1);
    CHECK(r == 0, "handshake whose first flight does not fit the socket buffers (-0x%04x)", -r);
    if (r == 0) {
        CHECK(tc_upgrade(&t) == 0, "upgrade");
        CHECK(echo_sizes(&t, 50, 40000, 100), "50 messages echoed through the small buffer");
    }
    tc_free(&t);
}

/* ----- the record layers: ipsec-mb's (io_tls_records.c) against mbedTLS's -------------------- */

static const struct {
    const unsigned *port;
    const char *records;
} record_servers[] = {{&port_main, "ipsec-mb"}, {&port_mbed, "mbedTLS"}};

/* A connection to one of record_servers, upgraded, that says its server's record layer. */
static int records_open(struct tc *t, int server)
{
    int r = tc_open(t, *record_servers[server].port, NULL, NULL, 0);
    uint8_t *got;
    size_t len;
    int op =
        r || tc_upgrade(t) || tc_frame(t, WSK_OP_TEXT, "records?", 8) ? -1 : tc_next(t, &got, &len);
    const char *want = record_servers[server].records;
    int ok = op == WSK_OP_TEXT && len == strlen(want) && !memcmp(got, want, len);
    if (op >= 0) free(got);
    return EXPECT(ok, "the server seals with %s (handshake -0x%04x, op %d)", want, -r, op);
}

/* Every suite, against the server on ipsec-mb's records and the one on mbedTLS's: this client
 * seals and opens with mbedTLS, so each message crosses the two record layers both ways.  Sizes
 * around a record's 16 KiB (a frame header more: one record, or two), and 1 MiB (65 records). */
static void records_suites(void)
{
    static const struct {
        int id;
        const char *name;
    } suites[] = {
        {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "AES-128-GCM"},
        {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "AES-256-GCM"},
        {MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, "ChaCha20-Poly1305"},
    };
    static const size_t sizes[] = {0, 1, 16383, 16384, 16385, 1u << 20};
    uint8_t *buf = malloc(1u << 20);
    for (int srv = 0; srv < 2; srv++) {
        for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) {
            struct tc t;
            tc_suite[0] = suites[i].id;
            int ok = records_open(&t, srv);
            tc_suite[0] = 0;
            ok = ok && !strcmp(mbedtls_ssl_get_ciphersuite(&t.ssl),
                               mbedtls_ssl_get_ciphersuite_name(suites[i].id));
            for (size_t k = 0; k < sizeof sizes / sizeof sizes[0] && ok; k++) {
                uint8_t *got;
                size_t len, n = sizes[k];
                fill(buf, n, (unsigned)k);
                int op = tc_frame(&t, WSK_OP_BINARY, buf, n) ? -1 : tc_next(&t, &got, &len);
                ok = EXPECT(op == WSK_OP_BINARY && len == n && !memcmp(got, buf, n),
                            "%zu bytes: op %d, %zu back", n, op, op < 0 ? 0 : len);
                if (op >= 0) free(got);
            }
            CHECK(ok, "%s, server on %s records: 0, 1, 16383, 16384, 16385 bytes and 1 MiB echoed",
                  suites[i].name, record_servers[srv].records);
            tc_free(&t);
        }
    }
    free(buf);
}

/* A record with one bit flipped: the server answers with a fatal bad_record_mac alert, logs it
 * and closes, delivering nothing (no echo), whichever record layer it uses. */
static void records_tampered(void)
{
    for (int srv = 0; srv < 2; srv++) {
        struct tc t;
        log_clear();
        if (records_open(&t, srv)) {
            t.flip = 1;
            uint8_t b;
            int r = tc_frame(&t, WSK_OP_TEXT, "tampered", 8) ? -1 : mbedtls_ssl_read(&t.ssl, &b, 1);
            int alert = r == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ? t.ssl.in_msg[1] : -1;
            CHECK(alert == MBEDTLS_SSL_ALERT_MSG_BAD_RECORD_MAC,
                  "%s records: a flipped bit is answered with bad_record_mac (read -0x%04x, alert "
                  "%d)",
                  record_servers[srv].records, -r, alert);
            CHECK(log_wait("MAC"), "%s records: the server logs it", record_servers[srv].records);
        }
        tc_free(&t);
    }
}

/* A record header declaring more than any record can hold (2^14 plaintext bytes and the AEAD's
 * overhead, but within TLS's 2^14 + 2048): refused as soon as the header is in, with a fatal
 * record_overflow alert from ipsec-mb's record layer, rather than waited for. */
static void records_oversized(void)
{
    for (int srv = 0; srv < 2; srv++) {
        int alert = -1, r = 0;
        struct tc t;
        if (records_open(&t, srv)) {
            static const uint8_t hdr[5] = {23, 3, 3, 0x47, 0xff}; /* 18431 bytes */
            uint8_t b;
            r = send(t.fd, hdr, sizeof hdr, MSG_NOSIGNAL) == sizeof hdr
                    ? mbedtls_ssl_read(&t.ssl, &b, 1)
                    : -1;
            alert = r == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ? t.ssl.in_msg[1] : -1;
        }
        tc_free(&t);
        if (srv == 0)
            CHECK(alert == MBEDTLS_SSL_ALERT_MSG_RECORD_OVERFLOW,
                  "ipsec-mb records: an oversized record header is answered with record_overflow "
                  "(read -0x%04x, alert %d)",
                  -r, alert);
        else
            CHECK(r <= 0 && r != MBEDTLS_ERR_NET_RECV_FAILED,
                  "mbedTLS records: an oversized record header ends the connection (-0x%04x)", -r);
    }
}

/* close_notify both ways: the client's ends the connection (the server answers with its own);
 * after a closing handshake started by the client, the server sends one before closing TCP. */
static void records_close_notify(void)
{
    for (int srv = 0; srv < 2; srv++) {
        struct tc t;
        uint8_t b, *got;
        size_t len;
        if (records_open(&t, srv)) {
            int r = mbedtls_ssl_close_notify(&t.ssl);
            int rr = r ? r : mbedtls_ssl_read(&t.ssl, &b, 1);
            CHECK(rr == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY,
                  "%s records: the client's close_notify, the server's in return (-0x%04x)",
                  record_servers[srv].records, -rr);
        }
        tc_free(&t);
        if (records_open(&t, srv)) {
            uint8_t code[2] = {0x03, 0xe8};
            int op = tc_frame(&t, WSK_OP_CLOSE, code, 2) ? -1 : tc_next(&t, &got, &len);
            if (op >= 0) free(got);
            int r = op == WSK_OP_CLOSE ? mbedtls_ssl_read(&t.ssl, &b, 1) : -1;
            CHECK(r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY,
                  "%s records: a close frame answered, then close_notify (op %d, read -0x%04x)",
                  record_servers[srv].records, op, -r);
        }
        tc_free(&t);
    }
}

static ev_async done_async;

static void *client_thread(void *arg)
{
    (void)arg;
    main_server();
    bad_clients();
    client_certs();
    small_buffer();
    records_suites();
    records_tampered();
    records_oversized();
    records_close_notify();
    ev_async_send(EV_DEFAULT, &done_async);
    return NULL;
}

static void on_done(struct ev_loop *ev, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(ev, EVBREAK_ALL);
}

/* ----- session resumption by the library's client (main thread) ----------------------------- */

/* Connections one after another with one wsk_tls_session: to the main server, again (resumed),
 * to the same server on another port (a full handshake: the session is kept for one host and
 * port, although this server would take it), and to the first port again (a full handshake:
 * the session kept is now the other port's); then to a third server twice, restarted in
 * between: the session offered the second time is declined, and the client knows it. */
#define RS_STEPS 6
static struct {
    wsk_loop *loop;
    wsk_tls_session *ts;
    wsk_server *third;
    unsigned ports[RS_STEPS];
    int resumed[RS_STEPS];
    int step;
} rs;

static void rs_next(void);

static void rs_open(wsk_ws *ws)
{
    rs.resumed[rs.step] = wsk_tls_resumed(ws);
    wsk_close(ws, 1000, NULL, 0);
}

static void rs_close(wsk_ws *ws, unsigned code, const char *reason, size_t reason_len)
{
    (void)ws;
    (void)code;
    (void)reason;
    (void)reason_len;
    rs.step++;
    rs_next();
}

static void rs_next(void)
{
    static const wsk_handlers h = {.open = rs_open, .close = rs_close};
    if (rs.step == RS_STEPS) {
        ev_break(EV_DEFAULT, EVBREAK_ALL);
        return;
    }
    if (rs.step == RS_STEPS - 1) { /* the third server restarts: new ticket keys, empty cache */
        wsk_server_free(rs.third);
        rs.third = server(rs.loop, path("server.crt"), path("server.key"), NULL, NULL, 10);
        if (!rs.third || wsk_server_listen(rs.third, "127.0.0.1", rs.ports[rs.step]) < 0) {
            ev_break(EV_DEFAULT, EVBREAK_ALL);
            return;
        }
    }
    char url[64];
    snprintf(url, sizeof url, "wss://localhost:%u/", rs.ports[rs.step]);
    wsk_client_opts o;
    wsk_client_opts_init(&o);
    o.tls_ca = path("ca.crt");
    o.tls_session = rs.ts;
    rs.resumed[rs.step] = -1;
    if (!wsk_connect(rs.loop, url, &o, &h, NULL, NULL)) ev_break(EV_DEFAULT, EVBREAK_ALL);
}

static void client_resumption(wsk_loop *loop, unsigned port, unsigned other)
{
    rs.loop = loop;
    rs.ts = wsk_tls_session_new();
    rs.ports[0] = rs.ports[1] = rs.ports[3] = port;
    rs.ports[2] = other;
    rs.third = server(loop, path("server.crt"), path("server.key"), NULL, NULL, 10);
    if (rs.third) wsk_server_listen(rs.third, "127.0.0.1", 0);
    rs.ports[4] = rs.ports[5] = rs.third ? wsk_server_port(rs.third) : 0;
    rs.step = 0;
    rs_next();
    ev_run(EV_DEFAULT, 0);
    CHECK(rs.step == RS_STEPS, "six connections in turn (%d)", rs.step);
    CHECK(rs.resumed[0] == 0, "the first handshake is a full one (%d)", rs.resumed[0]);
    CHECK(rs.resumed[1] == 1, "the next connection resumes its session (%d)", rs.resumed[1]);
    CHECK(rs.resumed[2] == 0, "another port: a full handshake (%d)", rs.resumed[2]);
    CHECK(rs.resumed[3] == 0, "back: a full handshake, the session kept was the other port's (%d)",
          rs.resumed[3]);
    CHECK(rs.resumed[4] == 0 && rs.resumed[5] == 0,
          "a restarted server declines the session offered: a full handshake (%d, %d)",
          rs.resumed[4], rs.resumed[5]);
    wsk_server_free(rs.third);
    wsk_tls_session_free(rs.ts);
    wsk_tls_session_free(NULL);
}

/* ----- the library's client on ipsec-mb's records, the server on mbedTLS's (main thread) ------ */

static const size_t rc_sizes[] = {0, 1, 16383, 16384, 16385, 1u << 20};
#define RC_STEPS (int)(sizeof rc_sizes / sizeof rc_sizes[0])
static struct {
    uint8_t *buf;
    int step, ok;
    const char *records;
} rc;

static void rc_send(wsk_ws *ws)
{
    fill(rc.buf, rc_sizes[rc.step], (unsigned)rc.step);
    wsk_send(ws, rc.buf, rc_sizes[rc.step], WSK_OP_BINARY, 0);
}

static void rc_open(wsk_ws *ws)
{
    rc.records = wsk_tls_records(ws);
    rc_send(ws);
}

static void rc_message(wsk_ws *ws, const void *data, size_t len, wsk_opcode op)
{
    size_t n = rc_sizes[rc.step];
    fill(rc.buf, n, (unsigned)rc.step);
    rc.ok = EXPECT(op == WSK_OP_BINARY && len == n && !memcmp(data, rc.buf, n),
                   "%zu bytes echoed: op %d, %zu back", n, (int)op, len);
    if (!rc.ok || ++rc.step == RC_STEPS)
        wsk_close(ws, 1000, NULL, 0);
    else
        rc_send(ws);
}

static void rc_close(wsk_ws *ws, unsigned code, const char *reason, size_t reason_len)
{
    (void)ws;
    (void)code;
    (void)reason;
    (void)reason_len;
    ev_break(EV_DEFAULT, EVBREAK_ALL);
}

/* The other way round from records_suites: the library's client seals and opens with ipsec-mb,
 * the server (WSK_TLS_RECORDS=mbedtls) with mbedTLS, on the suite that server prefers. */
static void client_records(wsk_loop *loop, unsigned port)
{
    static const wsk_handlers h = {.open = rc_open, .message = rc_message, .close = rc_close};
    char url[64];
    snprintf(url, sizeof url, "wss://localhost:%u/", port);
    wsk_client_opts o;
    wsk_client_opts_init(&o);
    o.tls_ca = path("ca.crt");
    rc.buf = malloc(1u << 20);
    rc.ok = 1;
    if (wsk_connect(loop, url, &o, &h, NULL, NULL)) ev_run(EV_DEFAULT, 0);
    CHECK(rc.ok && rc.step == RC_STEPS && rc.records && !strcmp(rc.records, "ipsec-mb"),
          "client on %s records, server on mbedTLS's: 0, 1, 16383, 16384, 16385 bytes and 1 MiB "
          "echoed (%d of %d)",
          rc.records ? rc.records : "no", rc.step, RC_STEPS);
    free(rc.buf);
}

/* ----- configuration errors (main thread) ---------------------------------------------------- */

static void config_errors(wsk_loop *loop)
{
    int total;
    struct {
        const char *cert, *key, *pw, *ca, *expect, *what;
    } cases[] = {
        {path("none.crt"), path("server.key"), NULL, NULL, "none.crt", "a missing certificate"},
        {path("server.crt"), path("client.key"), NULL, NULL, "does not match",
         "a key that does not match"},
        {path("server.crt"), path("server-pass.key"), NULL, NULL, "password is needed",
         "an encrypted key without password"},
        {path("server.crt"), path("server-pass.key"), "nope", NULL, "wrong password",
         "a wrong password"},
        {path("server.crt"), path("server.key"), NULL, path("none.crt"), "none.crt",
         "a missing client CA"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        log_clear();
        wsk_server *s = server(loop, cases[i].cert, cases[i].key, cases[i].pw, cases[i].ca, 10);
        CHECK(!s && log_count(cases[i].expect, &total) == 1 && total == 1,
              "%s: no server, one log line", cases[i].what);
        wsk_server_free(s);
    }
    log_clear();
    wsk_server *s = server(loop, path("server.crt"), path("server-pass.key"), "wskit", NULL, 10);
    CHECK(s && log_count("", &total) == 0, "an encrypted key with its password");
    wsk_server_free(s);
}

/* The listening socket of srv (found by port): accepted sockets inherit its buffer sizes. */
static void small_sndbuf(unsigned port)
{
    for (int fd = 3; fd < 1024; fd++) {
        struct sockaddr_in a;
        socklen_t al = sizeof a;
        int acc = 0;
        socklen_t ol = sizeof acc;
        if (getsockname(fd, (struct sockaddr *)&a, &al) < 0 || a.sin_family != AF_INET ||
            ntohs(a.sin_port) != port || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ol) < 0 ||
            !acc)
            continue;
        int sz = 4096; /* the kernel doubles it */
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    }
}

static int make_chain(void)
{
    FILE *out = fopen(path("bigchain.crt"), "w");
    if (!out) return -1;
    for (int i = 0; i < 30; i++) {
        FILE *in = fopen(path(i ? "ca.crt" : "server.crt"), "r");
        char buf[4096];
        size_t n;
        if (!in) break;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
        fclose(in);
    }
    return fclose(out);
}

/* The certificates go with the test, however it ends (short of a kill). */
static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/wskit-test-tls-%d", (int)getpid());
    atexit(remove_dir);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "scripts/mkcerts %s >/dev/null 2>&1", dir);
    if (system(cmd) != 0) {
        printf("ok 1 - TLS tests # SKIP scripts/mkcerts failed (openssl missing?)\n");
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    wsk_loop *loop = wsk_loop_new(EV_DEFAULT);
    wsk_loop_set_log(loop, WSK_LOG_INFO, log_capture, NULL);
    config_errors(loop);

    char crt[512], key[512]; /* path() reuses its buffers */
    snprintf(crt, sizeof crt, "%s", path("server.crt"));
    snprintf(key, sizeof key, "%s", path("server.key"));
    wsk_server *s1 = server(loop, crt, key, NULL, NULL, 10);
    wsk_server *s2 = server(loop, crt, key, NULL, path("client-ca.crt"), 10);
    wsk_server *s3 = make_chain() ? NULL : server(loop, path("bigchain.crt"), key, NULL, NULL, 10);
    wsk_server *s4 = server(loop, crt, key, NULL, NULL, 2);
    setenv("WSK_TLS_RECORDS", "mbedtls", 1); /* read when the configuration is made */
    wsk_server *s5 = server(loop, crt, key, NULL, NULL, 10);
    unsetenv("WSK_TLS_RECORDS");
    CHECK(s1 && s2 && s3 && s4 && s5, "five TLS servers");
    if (!s1 || !s2 || !s3 || !s4 || !s5) return TEST_DONE();
    wsk_server_listen(s1, "127.0.0.1", 0);
    wsk_server_listen(s2, "127.0.0.1", 0);
    wsk_server_listen(s3, "127.0.0.1", 0);
    wsk_server_listen(s4, "127.0.0.1", 0);
    wsk_server_listen(s5, "127.0.0.1", 0);
    port_main = wsk_server_port(s1);
    port_auth = wsk_server_port(s2);
    port_small = wsk_server_port(s3);
    port_stall = wsk_server_port(s4);
    port_mbed = wsk_server_port(s5);
    small_sndbuf(port_small);

    ev_async_init(&done_async, on_done);
    ev_async_start(EV_DEFAULT, &done_async);
    pthread_t th;
    pthread_create(&th, NULL, client_thread, NULL);
    ev_run(EV_DEFAULT, 0);
    pthread_join(th, NULL);
    /* The main server on a second port: the kernel's pick, taken back and given to it. */
    unsigned second = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) &&
        !getsockname(fd, (struct sockaddr *)&a, &al))
        second = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    CHECK(second && wsk_server_listen(s1, "127.0.0.1", second) == 0, "a second port (%u)", second);
    client_resumption(loop, port_main, second);
    client_records(loop, port_mbed);

    wsk_server_free(s1);
    wsk_server_free(s2);
    wsk_server_free(s3);
    wsk_server_free(s4);
    wsk_server_free(s5);
    wsk_loop_free(loop);
    return TEST_DONE();
}
