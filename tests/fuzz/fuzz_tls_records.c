/* Fuzz target: the TLS records a peer sends once the handshake is over (io_tls_records.c), read
 * from a socket in whatever pieces arrive: the header parser, authentication, alerts, records
 * that straddle reads and plaintext handed on in parts.  A second record layer with the mirror
 * keys seals what the input asks for, so the fuzzer reaches what follows a valid tag too.
 *
 * Input byte 0: bits 0-1 the AEAD (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305), bits 2-4 the
 * reader's buffer (1, 7, 100, 16383, 16384, 16385, 70000 or 512 KiB bytes).  Then commands:
 *   0x00-0x7f  application data: a record of (byte << 7 | next byte) & 0x7fff plaintext bytes,
 *              taken from the input (zeros past its end), sealed
 *   0x80-0xbf  raw bytes: the next (byte & 0x3f) + 1 input bytes as they are
 *   0xc0-0xff  an alert, level and description from the next two bytes, sealed
 * Whatever the reader returns, its plaintext must be exactly the application data sealed before
 * the first raw byte, in order; it must end with an error or EOF, never crash or over-read. */
#include "io_tls_records.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STREAM_MAX (160 * 1024) /* what the socket pair holds (its buffers are set to more) */
/* Writes into the socket pair at most: each costs its buffer about a kilobyte besides its bytes
 * (the kernel's accounting), so that thousands of small records would fill it before STREAM_MAX
 * and a write would then come back short. */
#define WRITES_MAX 256

static const size_t caps[] = {1, 7, 100, 16383, 16384, 16385, 70000, 512 * 1024};

static void keys_for(struct tls_rec_keys *k, int aead, int mirror)
{
    memset(k, 0, sizeof *k);
    k->aead = (enum tls_rec_aead)(aead + 1);
    k->key_len = aead == 0 ? 16 : 32;
    for (int i = 0; i < 32; i++) {
        k->out_key[i] = (uint8_t)(mirror ? 0xa0 + i : 0x10 + i);
        k->in_key[i] = (uint8_t)(mirror ? 0x10 + i : 0xa0 + i);
    }
    for (int i = 0; i < 12; i++) {
        k->out_iv[i] = (uint8_t)(mirror ? 0x50 + i : 0x30 + i);
        k->in_iv[i] = (uint8_t)(mirror ? 0x30 + i : 0x50 + i);
    }
    k->out_seq = k->in_seq = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static void *engine;
    if (!engine) engine = tls_rec_engine_new();
    if (!engine || size < 1) return 0;
    int aead = data[0] & 3;
    if (aead == 3) return 0;
    size_t cap = caps[(data[0] >> 2) & 7];
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds)) abort();
    int sz = 4 * STREAM_MAX;
    setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);

    size_t bufsz = TLS_REC_MAX + 256;
    uint8_t *in = malloc(bufsz), *out = malloc(bufsz), *pin = malloc(bufsz), *pout = malloc(bufsz);
    uint8_t *want = malloc(STREAM_MAX), *got = malloc(cap);
    struct tls_rec_keys k, pk;
    keys_for(&k, aead, 0);
    keys_for(&pk, aead, 1);
    struct tls_rec *r = tls_rec_new(engine, &k, in, bufsz, out, bufsz);
    struct tls_rec *peer = tls_rec_new(engine, &pk, pin, bufsz, pout, bufsz);
    if (!in || !out || !pin || !pout || !want || !got || !r || !peer) abort();

    size_t sent = 0, nwant = 0, i = 1;
    int clean = 1; /* no raw bytes yet: what was sealed must come out */
    for (int writes = 0; i < size && sent < STREAM_MAX - TLS_REC_MAX && writes < WRITES_MAX;
         writes++) {
        uint8_t op = data[i++];
        if (op < 0x80) {
            size_t len = ((size_t)op << 8 | (i < size ? data[i++] : 0)) & 0x7fff;
            size_t room = tls_rec_room(peer);
            if (!room) abort();
            if (len > room) len = room;
            size_t have = i < size ? size - i : 0, take = len < have ? len : have;
            /* In two pieces (the input's bytes, then zeros), as a queue's segments. */
            static const uint8_t zeros[TLS_REC_PLAIN_MAX];
            struct iovec piece[2] = {{(void *)(data + i), take}, {(void *)zeros, len - take}};
            if (clean) {
                memcpy(want + nwant, data + i, take);
                memset(want + nwant + take, 0, len - take);
                nwant += len;
            }
            i += take;
            if (tls_rec_seal(peer, piece, 2) || tls_rec_flush(peer, fds[1]) != (long)len) abort();
            sent += len + TLS_REC_HEADER + 8 + TLS_REC_TAG;
        } else if (op < 0xc0) {
            size_t n = (size_t)(op & 0x3f) + 1;
            if (n > size - i) n = size - i;
            if (n && write(fds[1], data + i, n) != (ssize_t)n) abort();
            i += n;
            sent += n;
            clean = clean && !n;
        } else {
            uint8_t level = i < size ? data[i++] : 1, desc = i < size ? data[i++] : 0;
            tls_rec_alert(peer, fds[1], level, desc);
            sent += 2 + TLS_REC_HEADER + 8 + TLS_REC_TAG;
            clean = 0; /* an alert may end the stream, or be skipped */
        }
    }
    close(fds[1]);

    size_t total = 0;
    long n;
    int reads = 0;
    while ((n = tls_rec_read(r, fds[0], got, cap)) > 0) {
        if ((size_t)n > cap) abort();
        if (clean || total + (size_t)n <= nwant) {
            if (total + (size_t)n > nwant || memcmp(got, want + total, (size_t)n)) abort();
        }
        total += (size_t)n;
        if (++reads > 10000000) abort(); /* no progress would loop forever */
    }
    if (n == TLS_REC_AGAIN) abort(); /* the writer closed: the stream must end */
    if (clean && (total != nwant || n != TLS_REC_EOF)) abort();
    if (tls_rec_read(r, fds[0], got, cap) != n) abort(); /* the end is reported again */

    tls_rec_free(r);
    tls_rec_free(peer);
    close(fds[0]);
    free(in);
    free(out);
    free(pin);
    free(pout);
    free(want);
    free(got);
    return 0;
}
