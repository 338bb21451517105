/* wss:// for wsbench on mbedTLS: the only file of wsbench that knows mbedTLS.  See bench.h.
 * Plain ws:// runs never come here. */
#include "bench.h"

#include <errno.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct wb_tls_conf {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca, cert;
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    pthread_mutex_t lock; /* the DRBG is shared by the worker threads */
    char host[256];
};

struct wb_tls {
    mbedtls_ssl_context ssl;
    int fd;
    size_t pending; /* length of a write mbedTLS asked to be repeated (WANT_WRITE) */
};

static int rng(void *arg, unsigned char *out, size_t n)
{
    wb_tls_conf *cf = arg;
    pthread_mutex_lock(&cf->lock);
    int r = mbedtls_ctr_drbg_random(&cf->drbg, out, n);
    pthread_mutex_unlock(&cf->lock);
    return r;
}

static void why_of(int err, const char *what, char *why, size_t cap)
{
    char buf[128];
    mbedtls_strerror(err, buf, sizeof buf);
    snprintf(why, cap, "%s: %s", what, buf);
}

void wb_tls_conf_free(wb_tls_conf *cf)
{
    if (!cf) return;
    mbedtls_ssl_config_free(&cf->conf);
    mbedtls_x509_crt_free(&cf->ca);
    mbedtls_x509_crt_free(&cf->cert);
    mbedtls_pk_free(&cf->key);
    mbedtls_ctr_drbg_free(&cf->drbg);
    mbedtls_entropy_free(&cf->entropy);
    pthread_mutex_destroy(&cf->lock);
    free(cf);
}

wb_tls_conf *wb_tls_conf_new(const wb_opts *o, const char *host, char *why, size_t cap)
{
    wb_tls_conf *cf = calloc(1, sizeof *cf);
    if (!cf) {
        snprintf(why, cap, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&cf->lock, NULL);
    snprintf(cf->host, sizeof cf->host, "%s", host);
    mbedtls_ssl_config_init(&cf->conf);
    mbedtls_x509_crt_init(&cf->ca);
    mbedtls_x509_crt_init(&cf->cert);
    mbedtls_pk_init(&cf->key);
    mbedtls_entropy_init(&cf->entropy);
    mbedtls_ctr_drbg_init(&cf->drbg);
    int r = mbedtls_ctr_drbg_seed(&cf->drbg, mbedtls_entropy_func, &cf->entropy,
                                  (const unsigned char *)"wsbench", 7);
    if (r) {
        why_of(r, "TLS random generator", why, cap);
        goto fail;
    }
    r = mbedtls_ssl_config_defaults(&cf->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT);
    if (r) {
        why_of(r, "TLS configuration", why, cap);
        goto fail;
    }
    mbedtls_ssl_conf_rng(&cf->conf, rng, cf);
    if (o->tls_insecure) {
        mbedtls_ssl_conf_authmode(&cf->conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        const char *ca = o->tls_ca ? o->tls_ca : "/etc/ssl/certs/ca-certificates.crt";
        r = mbedtls_x509_crt_parse_file(&cf->ca, ca);
        if (r < 0) {
            why_of(r, ca, why, cap);
            goto fail;
        }
        mbedtls_ssl_conf_ca_chain(&cf->conf, &cf->ca, NULL);
        mbedtls_ssl_conf_authmode(&cf->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
    if (o->tls_cert) {
        r = mbedtls_x509_crt_parse_file(&cf->cert, o->tls_cert);
        if (!r)
            r = mbedtls_pk_parse_keyfile(&cf->key, o->tls_key ? o->tls_key : o->tls_cert,
                                         o->tls_passphrase);
        if (!r) r = mbedtls_ssl_conf_own_cert(&cf->conf, &cf->cert, &cf->key);
        if (r) {
            why_of(r, o->tls_cert, why, cap);
            goto fail;
        }
    }
    return cf;
fail:
    wb_tls_conf_free(cf);
    return NULL;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    wb_tls *s = ctx;
    ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return (int)n;
    return errno == EAGAIN || errno == EINTR ? MBEDTLS_ERR_SSL_WANT_WRITE
                                             : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    wb_tls *s = ctx;
    ssize_t n = recv(s->fd, buf, len, 0);
    if (n >= 0) return (int)n;
    return errno == EAGAIN || errno == EINTR ? MBEDTLS_ERR_SSL_WANT_READ
                                             : MBEDTLS_ERR_NET_RECV_FAILED;
}

wb_tls *wb_tls_new(wb_tls_conf *cf, int fd)
{
    wb_tls *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->fd = fd;
    mbedtls_ssl_init(&s->ssl);
    if (mbedtls_ssl_setup(&s->ssl, &cf->conf) || mbedtls_ssl_set_hostname(&s->ssl, cf->host)) {
        wb_tls_free(s);
        return NULL;
    }
    mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
    return s;
}

void wb_tls_free(wb_tls *s)
{
    if (!s) return;
    mbedtls_ssl_free(&s->ssl);
    free(s);
}

int wb_tls_handshake(wb_tls *s, int *want_write, char *why, size_t cap)
{
    int r = mbedtls_ssl_handshake(&s->ssl);
    if (!r) return 1;
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
        *want_write = r == MBEDTLS_ERR_SSL_WANT_WRITE;
        return 0;
    }
    why_of(r, "TLS handshake", why, cap);
    return -1;
}

long wb_tls_read(wb_tls *s, void *buf, size_t n)
{
    int r = mbedtls_ssl_read(&s->ssl, buf, n);
    if (r >= 0) return r;
    if (r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (r == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) return 0;
    errno = EIO;
    return -1;
}

long wb_tls_writev(wb_tls *s, const struct iovec *iov, int n)
{
    long total = 0;
    for (int i = 0; i < n; i++) {
        const unsigned char *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left) {
            /* mbedTLS wants a write it could not finish repeated with the same length. */
            size_t len = s->pending ? s->pending : left;
            if (len > left) len = left;
            int r = mbedtls_ssl_write(&s->ssl, p, len);
            if (r == MBEDTLS_ERR_SSL_WANT_WRITE || r == MBEDTLS_ERR_SSL_WANT_READ) {
                s->pending = len;
                if (total) return total;
                errno = EAGAIN;
                return -1;
            }
            if (r < 0) {
                if (total) return total;
                errno = EIO;
                return -1;
            }
            s->pending = 0;
            total += r;
            p += r;
            left -= (size_t)r;
        }
    }
    return total;
}

size_t wb_tls_pending(wb_tls *s)
{
    return mbedtls_ssl_get_bytes_avail(&s->ssl);
}
