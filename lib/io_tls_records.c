/* TLS 1.2 records sealed and opened with ipsec-mb once the handshake is done (see
 * io_tls_records.h).
 *
 * The AEAD record rules (RFC 5246 6.2.3.3, RFC 5288 3, RFC 7905 2):
 *  - additional data: sequence number (8 bytes) + content type + version + plaintext length;
 *  - AES-GCM nonce: the 4-byte implicit salt + an 8-byte explicit nonce carried in the record,
 *    ours the sequence number (a nonce never repeats while the sequence number does not wrap,
 *    which sealing refuses); the peer's is taken as it comes;
 *  - ChaCha20-Poly1305 nonce: the 12-byte IV XOR the sequence number, nothing in the record;
 *  - a 16-byte tag after the ciphertext, checked before a byte of the plaintext is handed on.
 * Reads go into the input buffer (several records per recv when they are there) and each record
 * is opened from there straight into the caller's buffer: the decryption is the only copy.
 * Writes seal records in the output buffer, as many as fit, and leave in one send. */
#include "io_tls_records.h"

#include <intel-ipsec-mb.h>
#include <mbedtls/platform_util.h> /* mbedtls_platform_zeroize */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define ALERT_FATAL           2
#define ALERT_CLOSE_NOTIFY    0
#define ALERT_UNEXPECTED      10
#define ALERT_BAD_RECORD_MAC  20
#define ALERT_RECORD_OVERFLOW 22
#define ALERT_DECODE_ERROR    50
#define TYPE_CHANGE_CIPHER    20
#define TYPE_ALERT            21
#define TYPE_HANDSHAKE        22
#define TYPE_APPLICATION      23

struct engine {
    IMB_MGR *m;
    IMB_ARCH arch;
};

struct tls_rec {
    struct gcm_key_data gk_out, gk_in; /* AES-GCM: round keys and GHASH tables (64-aligned) */
    const IMB_MGR *m;
    enum tls_rec_aead aead;
    size_t prefix; /* header + explicit nonce: where a record's ciphertext starts */
    uint8_t key_out[32], key_in[32]; /* ChaCha20-Poly1305 */
    uint8_t iv_out[12], iv_in[12];
    uint64_t seq_out, seq_in;
    long err; /* the end or failure reported after the plaintext that came before it */
    uint8_t *in;
    size_t in_cap, in_off, in_len; /* records received: in[in_off, in_len) */
    size_t pt_off, pt_len;         /* plaintext of a record opened in place, not handed on yet */
    uint8_t *out;
    size_t out_cap, out_off, out_len; /* sealed records: out[out_off, out_len) not sent yet */
    size_t out_plain;                 /* plaintext bytes they carry */
};

void *tls_rec_engine_new(void)
{
    struct engine *e = malloc(sizeof *e);
    if (!e) return NULL;
    e->m = alloc_mb_mgr(0);
    if (!e->m) {
        free(e);
        return NULL;
    }
    e->arch = IMB_ARCH_NONE;
    init_mb_mgr_auto(e->m, &e->arch);
    if (e->arch == IMB_ARCH_NONE) {
        tls_rec_engine_free(e);
        return NULL;
    }
    return e;
}

void tls_rec_engine_free(void *engine)
{
    struct engine *e = engine;
    if (!e) return;
    free_mb_mgr(e->m);
    free(e);
}

int tls_rec_engine_aesni(const void *engine)
{
    const struct engine *e = engine;
    return e && e->arch != IMB_ARCH_NOAESNI;
}

const char *tls_rec_version(void)
{
    return imb_get_version_str();
}

struct tls_rec *tls_rec_new(const void *engine, const struct tls_rec_keys *k, uint8_t *in,
                            size_t in_cap, uint8_t *out, size_t out_cap)
{
    const struct engine *e = engine;
    if (!e || in_cap < TLS_REC_MAX || out_cap < TLS_REC_MAX) return NULL;
    struct tls_rec *r = aligned_alloc(64, (sizeof *r + 63) / 64 * 64);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->m = e->m;
    r->aead = k->aead;
    r->prefix = TLS_REC_HEADER + (k->aead == TLS_REC_CHACHA20_POLY1305 ? 0 : 8);
    switch (k->aead) {
    case TLS_REC_AES128_GCM:
        IMB_AES128_GCM_PRE(e->m, k->out_key, &r->gk_out);
        IMB_AES128_GCM_PRE(e->m, k->in_key, &r->gk_in);
        break;
    case TLS_REC_AES256_GCM:
        IMB_AES256_GCM_PRE(e->m, k->out_key, &r->gk_out);
        IMB_AES256_GCM_PRE(e->m, k->in_key, &r->gk_in);
        break;
    case TLS_REC_CHACHA20_POLY1305:
        memcpy(r->key_out, k->out_key, 32);
        memcpy(r->key_in, k->in_key, 32);
        break;
    default: free(r); return NULL;
    }
    memcpy(r->iv_out, k->out_iv, sizeof r->iv_out);
    memcpy(r->iv_in, k->in_iv, sizeof r->iv_in);
    r->seq_out = k->out_seq;
    r->seq_in = k->in_seq;
    r->in = in;
    r->in_cap = in_cap;
    r->out = out;
    r->out_cap = out_cap;
    return r;
}

void tls_rec_free(struct tls_rec *r)
{
    if (!r) return;
    mbedtls_platform_zeroize(r, sizeof *r);
    free(r);
}

/* ----- one record ------------------------------------------------------------------------------
 */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

/* The nonce of the record with sequence number seq (GCM: explicit, the 8 bytes the record
 * carries; ChaCha20-Poly1305: NULL). */
static void nonce(const struct tls_rec *r, const uint8_t iv[12], uint64_t seq,
                  const uint8_t *explicit, uint8_t out[12])
{
    if (r->aead == TLS_REC_CHACHA20_POLY1305) {
        uint8_t s[8];
        put64(s, seq);
        memcpy(out, iv, 12);
        for (int i = 0; i < 8; i++) out[4 + i] ^= s[i];
    } else {
        memcpy(out, iv, 4);
        memcpy(out + 4, explicit, 8);
    }
}

static void aad(uint8_t out[13], uint64_t seq, uint8_t type, size_t len)
{
    put64(out, seq);
    out[8] = type;
    out[9] = 3; /* TLS 1.2 is version 3.3 on the wire */
    out[10] = 3;
    out[11] = (uint8_t)(len >> 8);
    out[12] = (uint8_t)len;
}

/* Seals the plaintext pieces[0..n) (len bytes in all) as a record of `type` at the end of the
 * output buffer: header, explicit nonce, ciphertext, tag.  The pieces are read where they lie
 * (the send queue's segments): the cipher's output is the only copy.  0, or TLS_REC_ERR_SEQ. */
static int record_seal(struct tls_rec *r, uint8_t type, const struct iovec *pieces, int n,
                       size_t len)
{
    /* A wrapped sequence number would repeat a nonce (RFC 5246 6.1: renegotiate before; no
     * WebSocket connection gets near 2^64 records, this one stops). */
    if (r->seq_out == UINT64_MAX) return TLS_REC_ERR_SEQ;
    uint8_t iv[12], a[13], *rec = r->out + r->out_len, *p = rec + r->prefix;
    size_t body = r->prefix - TLS_REC_HEADER + len + TLS_REC_TAG;
    rec[0] = type;
    rec[1] = 3;
    rec[2] = 3;
    rec[3] = (uint8_t)(body >> 8);
    rec[4] = (uint8_t)body;
    if (r->aead != TLS_REC_CHACHA20_POLY1305) put64(rec + TLS_REC_HEADER, r->seq_out);
    nonce(r, r->iv_out, r->seq_out, rec + TLS_REC_HEADER, iv);
    aad(a, r->seq_out, type, len);
    struct gcm_context_data g;
    struct chacha20_poly1305_context_data cc;
    switch (r->aead) {
    case TLS_REC_AES128_GCM: IMB_AES128_GCM_INIT(r->m, &r->gk_out, &g, iv, a, 13); break;
    case TLS_REC_AES256_GCM: IMB_AES256_GCM_INIT(r->m, &r->gk_out, &g, iv, a, 13); break;
    case TLS_REC_CHACHA20_POLY1305:
        IMB_CHACHA20_POLY1305_INIT(r->m, r->key_out, &cc, iv, a, 13);
        break;
    }
    for (int i = 0; i < n; i++) {
        const uint8_t *src = pieces[i].iov_base;
        size_t k = pieces[i].iov_len;
        switch (r->aead) {
        case TLS_REC_AES128_GCM: IMB_AES128_GCM_ENC_UPDATE(r->m, &r->gk_out, &g, p, src, k); break;
        case TLS_REC_AES256_GCM: IMB_AES256_GCM_ENC_UPDATE(r->m, &r->gk_out, &g, p, src, k); break;
        case TLS_REC_CHACHA20_POLY1305:
            IMB_CHACHA20_POLY1305_ENC_UPDATE(r->m, r->key_out, &cc, p, src, k);
            break;
        }
        p += k;
    }
    switch (r->aead) {
    case TLS_REC_AES128_GCM:
        IMB_AES128_GCM_ENC_FINALIZE(r->m, &r->gk_out, &g, p, TLS_REC_TAG);
        break;
    case TLS_REC_AES256_GCM:
        IMB_AES256_GCM_ENC_FINALIZE(r->m, &r->gk_out, &g, p, TLS_REC_TAG);
        break;
    case TLS_REC_CHACHA20_POLY1305:
        IMB_CHACHA20_POLY1305_ENC_FINALIZE(r->m, &cc, p, TLS_REC_TAG);
        break;
    }
    r->seq_out++;
    r->out_len += TLS_REC_HEADER + body;
    return 0;
}

/* Opens the record rec[0..len) (a whole one, its header checked) into dst, which is either
 * rec + prefix or does not overlap the record.  The plaintext length, TLS_REC_ERR_MAC (dst
 * then holds nothing usable: it is cleared), TLS_REC_ERR_DECODE, or TLS_REC_ERR_SEQ. */
static long record_open(struct tls_rec *r, const uint8_t *rec, size_t len, uint8_t *dst)
{
    if (len < r->prefix + TLS_REC_TAG) return TLS_REC_ERR_DECODE;
    if (r->seq_in == UINT64_MAX) return TLS_REC_ERR_SEQ;
    size_t plain = len - r->prefix - TLS_REC_TAG;
    const uint8_t *c = rec + r->prefix, *want = c + plain;
    uint8_t n[12], a[13], tag[TLS_REC_TAG];
    nonce(r, r->iv_in, r->seq_in, rec + TLS_REC_HEADER, n);
    aad(a, r->seq_in, rec[0], plain);
    switch (r->aead) {
    case TLS_REC_AES128_GCM: {
        struct gcm_context_data g;
        IMB_AES128_GCM_DEC(r->m, &r->gk_in, &g, dst, c, plain, n, a, 13, tag, sizeof tag);
        break;
    }
    case TLS_REC_AES256_GCM: {
        struct gcm_context_data g;
        IMB_AES256_GCM_DEC(r->m, &r->gk_in, &g, dst, c, plain, n, a, 13, tag, sizeof tag);
        break;
    }
    case TLS_REC_CHACHA20_POLY1305: {
        struct chacha20_poly1305_context_data cc;
        IMB_CHACHA20_POLY1305_INIT(r->m, r->key_in, &cc, n, a, 13);
        IMB_CHACHA20_POLY1305_DEC_UPDATE(r->m, r->key_in, &cc, dst, c, plain);
        IMB_CHACHA20_POLY1305_DEC_FINALIZE(r->m, &cc, tag, sizeof tag);
        break;
    }
    }
    /* In constant time: how many tag bytes match must not show in the timing. */
    uint8_t diff = 0;
    for (size_t i = 0; i < sizeof tag; i++) diff |= (uint8_t)(tag[i] ^ want[i]);
    if (diff) {
        memset(dst, 0, plain);
        return TLS_REC_ERR_MAC;
    }
    r->seq_in++;
    return (long)plain;
}

long tls_rec_header(const uint8_t *p, size_t n)
{
    if (n < TLS_REC_HEADER) return 0;
    if (p[0] < TYPE_CHANGE_CIPHER || p[0] > TYPE_APPLICATION || p[1] != 3 || p[2] != 3)
        return TLS_REC_ERR_DECODE;
    size_t len = (size_t)p[3] << 8 | p[4];
    if (len > TLS_REC_PLAIN_MAX + 2048) return TLS_REC_ERR_DECODE;
    return (long)(TLS_REC_HEADER + len);
}

/* ----- reading ----------------------------------------------------------------------------------
 */

int tls_rec_input(struct tls_rec *r, const uint8_t *p, size_t n)
{
    if (n > r->in_cap - r->in_len) return TLS_REC_ERR_DECODE;
    memcpy(r->in + r->in_len, p, n);
    r->in_len += n;
    return 0;
}

/* The length of the whole record at in_off, or 0 when it is not all here.  A malformed header,
 * or one longer than a record of ours can be (which would never fit the input buffer), counts
 * as here: opening it reports it, at once. */
static long whole_record(const struct tls_rec *r)
{
    size_t have = r->in_len - r->in_off;
    long len = tls_rec_header(r->in + r->in_off, have);
    if (len < 0) return 1;
    if ((size_t)len > r->prefix + TLS_REC_TAG + TLS_REC_PLAIN_MAX) return len;
    return len && (size_t)len <= have ? len : 0;
}

int tls_rec_buffered(const struct tls_rec *r)
{
    return r->err || r->pt_len || whole_record(r);
}

/* A record that is not application data.  0 to go on (a warning alert), else the end. */
static long other_record(struct tls_rec *r, int fd, uint8_t type, const uint8_t *p, long len)
{
    if (type == TYPE_ALERT && len == 2) {
        if (p[1] == ALERT_CLOSE_NOTIFY) return TLS_REC_EOF;
        return p[0] == ALERT_FATAL ? TLS_REC_ERR_ALERT : 0;
    }
    if (type == TYPE_HANDSHAKE) return TLS_REC_ERR_RENEGO;
    tls_rec_alert(r, fd, ALERT_FATAL, type == TYPE_ALERT ? ALERT_DECODE_ERROR : ALERT_UNEXPECTED);
    return TLS_REC_ERR_DECODE;
}

/* Opens the records that are here into buf[*got, cap); a record whose plaintext does not fit is
 * opened in place and handed on in parts.  0, or the end. */
static long open_records(struct tls_rec *r, int fd, uint8_t *buf, size_t cap, size_t *got)
{
    long len;
    while (!r->pt_len && *got < cap && (len = whole_record(r)) > 0) {
        uint8_t *rec = r->in + r->in_off;
        int bad = tls_rec_header(rec, r->in_len - r->in_off) < 0;
        if (bad || (size_t)len > r->prefix + TLS_REC_TAG + TLS_REC_PLAIN_MAX) {
            tls_rec_alert(r, fd, ALERT_FATAL, bad ? ALERT_DECODE_ERROR : ALERT_RECORD_OVERFLOW);
            return TLS_REC_ERR_DECODE;
        }
        size_t plain =
            (size_t)len < r->prefix + TLS_REC_TAG ? 0 : (size_t)len - r->prefix - TLS_REC_TAG;
        int direct = rec[0] == TYPE_APPLICATION && plain <= cap - *got;
        uint8_t *dst = direct ? buf + *got : rec + r->prefix;
        long n = record_open(r, rec, (size_t)len, dst);
        r->in_off += (size_t)len;
        if (n == TLS_REC_ERR_MAC || n == TLS_REC_ERR_DECODE)
            tls_rec_alert(r, fd, ALERT_FATAL,
                          n == TLS_REC_ERR_MAC ? ALERT_BAD_RECORD_MAC : ALERT_DECODE_ERROR);
        if (n < 0) return n;
        if (rec[0] != TYPE_APPLICATION) {
            long e = other_record(r, fd, rec[0], dst, n);
            if (e) return e;
        } else if (direct) {
            *got += (size_t)n;
        } else {
            r->pt_off = (size_t)(dst - r->in);
            r->pt_len = (size_t)n;
        }
    }
    if (r->pt_len) { /* the rest of a record opened in place */
        size_t take = r->pt_len < cap - *got ? r->pt_len : cap - *got;
        memcpy(buf + *got, r->in + r->pt_off, take);
        *got += take;
        r->pt_off += take;
        r->pt_len -= take;
    }
    return 0;
}

long tls_rec_read(struct tls_rec *r, int fd, uint8_t *buf, size_t cap)
{
    if (r->err) return r->err;
    size_t got = 0;
    long e = 0;
    for (;;) {
        e = open_records(r, fd, buf, cap, &got);
        if (e || got == cap || r->pt_len) break;
        if (r->in_off) { /* what is left of a record goes to the front */
            memmove(r->in, r->in + r->in_off, r->in_len - r->in_off);
            r->in_len -= r->in_off;
            r->in_off = 0;
        }
        /* No more than the caller can take: the rest waits in the kernel. */
        if (got && cap - got < TLS_REC_PLAIN_MAX) break;
        ssize_t n;
        do n = recv(fd, r->in + r->in_len, r->in_cap - r->in_len, 0);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n <= 0) {
            e = n == 0 ? TLS_REC_EOF : TLS_REC_ERR_IO;
            break;
        }
        r->in_len += (size_t)n;
    }
    if (e) {
        r->err = e;
        return got ? (long)got : e;
    }
    return got ? (long)got : TLS_REC_AGAIN;
}

/* ----- writing ----------------------------------------------------------------------------------
 */

size_t tls_rec_room(const struct tls_rec *r)
{
    size_t left = r->out_cap - r->out_len;
    if (left <= r->prefix + TLS_REC_TAG) return 0;
    left -= r->prefix + TLS_REC_TAG;
    return left < TLS_REC_PLAIN_MAX ? left : TLS_REC_PLAIN_MAX;
}

int tls_rec_seal(struct tls_rec *r, const struct iovec *pieces, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++) len += pieces[i].iov_len;
    int e = record_seal(r, TYPE_APPLICATION, pieces, n, len);
    if (!e) r->out_plain += len;
    return e;
}

size_t tls_rec_unsent(const struct tls_rec *r)
{
    return r->out_len - r->out_off;
}

long tls_rec_flush(struct tls_rec *r, int fd)
{
    while (r->out_off < r->out_len) {
        ssize_t n = send(fd, r->out + r->out_off, r->out_len - r->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? TLS_REC_AGAIN : TLS_REC_ERR_IO;
        r->out_off += (size_t)n;
    }
    long plain = (long)r->out_plain;
    r->out_off = r->out_len = r->out_plain = 0;
    return plain;
}

void tls_rec_alert(struct tls_rec *r, int fd, uint8_t level, uint8_t desc)
{
    uint8_t alert[2] = {level, desc};
    struct iovec piece = {alert, sizeof alert};
    if (tls_rec_flush(r, fd) < 0 || !tls_rec_room(r)) return;
    if (record_seal(r, TYPE_ALERT, &piece, 1, sizeof alert) == 0) tls_rec_flush(r, fd);
}
