/* TLS 1.2 records sealed and opened with Intel's Multi-Buffer Crypto library (ipsec-mb) once
 * mbedTLS's handshake is done (internal; io_tls_records.c, the only file that includes
 * intel-ipsec-mb.h).
 *
 * mbedTLS 2.28 keeps the handshake, the certificates, the tickets and the alerts of the
 * handshake; io_tls.c hands a socket over to this layer when the suite is AES-GCM or
 * ChaCha20-Poly1305 (RFC 5288, RFC 7905), with the keys and sequence numbers mbedTLS derived.
 * From then on every record of that socket is sealed and opened here: 40 times faster than
 * mbedTLS's own ciphers for 16 KiB records (scripts/tls-floor.c).  This layer borrows mbedTLS's
 * record buffers (in_buf, out_buf, one record and a little more each), which mbedTLS no longer
 * uses once it is over, and which mbedtls_ssl_free zeroizes. */
#ifndef WSK_IO_TLS_RECORDS_H
#define WSK_IO_TLS_RECORDS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define TLS_REC_HEADER    5     /* type, version, length (RFC 5246 6.2.1) */
#define TLS_REC_PLAIN_MAX 16384 /* plaintext bytes per record, 2^14 (RFC 5246 6.2.1) */
#define TLS_REC_TAG       16
#define TLS_REC_MAX       (TLS_REC_HEADER + 8 + TLS_REC_PLAIN_MAX + TLS_REC_TAG)

/* Results besides byte counts. */
#define TLS_REC_AGAIN      (-1) /* the socket would block */
#define TLS_REC_EOF        (-2) /* close_notify received, or the peer closed TCP */
#define TLS_REC_ERR_IO     (-3) /* the socket failed (reset) */
#define TLS_REC_ERR_MAC    (-4) /* a record did not authenticate (bad_record_mac sent) */
#define TLS_REC_ERR_DECODE (-5) /* a malformed or oversized record (an alert sent) */
#define TLS_REC_ERR_ALERT  (-6) /* the peer sent a fatal alert */
#define TLS_REC_ERR_RENEGO (-7) /* a handshake record: renegotiation, refused */
#define TLS_REC_ERR_SEQ    (-8) /* 2^64 records: the sequence number would wrap */

enum tls_rec_aead { TLS_REC_AES128_GCM = 1, TLS_REC_AES256_GCM, TLS_REC_CHACHA20_POLY1305 };

/* What io_tls.c takes from mbedTLS at the hand-over: keys (16 or 32 bytes), the implicit IVs
 * (GCM: the 4-byte salt; ChaCha20-Poly1305: 12 bytes) and the next sequence number, for each
 * direction. */
struct tls_rec_keys {
    enum tls_rec_aead aead;
    size_t key_len;
    uint8_t out_key[32], in_key[32];
    uint8_t out_iv[12], in_iv[12];
    uint64_t out_seq, in_seq;
};

struct tls_rec;

/* The engine: ipsec-mb's functions for this CPU (an IMB_MGR), made once per TLS configuration
 * and only read afterwards, so any number of threads may seal and open with it.  NULL when it
 * cannot be made.  tls_rec_engine_aesni: 1 when its AES code path uses AES-NI. */
void *tls_rec_engine_new(void);
void tls_rec_engine_free(void *engine);
int tls_rec_engine_aesni(const void *engine);
/* ipsec-mb's version, "1.3.0". */
const char *tls_rec_version(void);

/* A socket's records from now on, with the keys in k (the caller zeroizes its copy), borrowing
 * in[0..in_cap) and out[0..out_cap) (each at least TLS_REC_MAX bytes) for as long as it lives.
 * NULL when out of memory. */
struct tls_rec *tls_rec_new(const void *engine, const struct tls_rec_keys *k, uint8_t *in,
                            size_t in_cap, uint8_t *out, size_t out_cap);
/* Zeroizes the keys and frees r (not the borrowed buffers). */
void tls_rec_free(struct tls_rec *r);

/* Received bytes that arrived before the hand-over (they follow the peer's Finished): they are
 * read first.  0, or TLS_REC_ERR_DECODE when they do not fit. */
int tls_rec_input(struct tls_rec *r, const uint8_t *p, size_t n);
/* Reads records from fd and opens them into buf[0..cap): plaintext bytes (> 0), TLS_REC_AGAIN,
 * or, once the plaintext before it has been returned, TLS_REC_EOF or an error.  Each record's
 * tag is checked before its plaintext counts.  A record that would not fit in cap waits. */
long tls_rec_read(struct tls_rec *r, int fd, uint8_t *buf, size_t cap);
/* 1 when a whole record or an end to report waits (no read event will announce it). */
int tls_rec_buffered(const struct tls_rec *r);

/* Sealing, in three steps the caller drives from its send queue: tls_rec_room says how many
 * plaintext bytes the next record may take (0 when the output buffer is full), tls_rec_seal
 * seals the plaintext pieces[0..n) as one record (read where they are, the cipher writing the
 * only copy; 0, or TLS_REC_ERR_SEQ), tls_rec_flush sends the sealed records: the plaintext bytes
 * they carried once all of them are out, TLS_REC_AGAIN (the rest waits, sealed: the caller keeps
 * those bytes queued, and tls_rec_unsent says how many bytes of records wait), or
 * TLS_REC_ERR_IO. */
size_t tls_rec_room(const struct tls_rec *r);
int tls_rec_seal(struct tls_rec *r, const struct iovec *pieces, int n);
long tls_rec_flush(struct tls_rec *r, int fd);
size_t tls_rec_unsent(const struct tls_rec *r);
/* Seals and sends one alert (close_notify: level 1, description 0) after any records waiting,
 * best effort: nothing is sent when those cannot all leave at once. */
void tls_rec_alert(struct tls_rec *r, int fd, uint8_t level, uint8_t desc);

/* The record header parser: p[0..n) starts a record.  Its whole length (header included) once
 * the 5 header bytes are there and valid, 0 when fewer are, TLS_REC_ERR_DECODE for an unknown
 * content type or version, or a length over 2^14 + 2048 (RFC 5246 6.2.3). */
long tls_rec_header(const uint8_t *p, size_t n);

#endif
