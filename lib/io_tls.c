/* TLS on mbedTLS for server and client sockets (with crypto.c, the only files that include
 * mbedTLS headers).
 *
 * The transport is invisible to conn.c: wsk_io_read and wsk_io_writev hand TLS sockets to
 * wsk_tls_read and wsk_tls_writev, which move plaintext in and out of mbedTLS, and mbedTLS moves
 * records through recv/send on the socket (bio_recv, bio_send).  Everything is non-blocking:
 *
 *  - The handshake runs inside whichever of read or write comes first.  While it is not over,
 *    writes are held (WSK_F_WANT_WRITE without EV_WRITE, so send_flush.c does not spin on a
 *    writable socket) and read events drive it; when the handshake has to write more than the
 *    kernel takes, a second watcher on the fd (`kick`) waits for room and then feeds a read
 *    event.  Once it is over, held writes are scheduled for the end of the loop turn.
 *  - Writes fill records: the segments of the send queue (one frame each, or part of one) are
 *    copied straight into mbedTLS's record buffer, up to 16 KiB, and sealed there in place
 *    (write_record), so a burst of small frames leaves in a few records instead of one record
 *    (and 21 to 29 bytes of overhead) each, and every byte is copied once, whether its record
 *    spans segments or not.  After WANT_WRITE mbedTLS holds the sealed record: `pending`
 *    remembers its length, and the bytes stay in the send queue (not reported written) until
 *    the record is out.
 *  - Each handshake flight leaves in one send (mbedTLS writes one record per message): records
 *    are gathered while the handshake runs and sent when it waits for the peer or ends.
 *  - Reads loop until mbedTLS wants more from the kernel, because records it has already pulled
 *    in (or that wait in the read-ahead buffer) would never wake the loop again.  The read-ahead
 *    buffer turns mbedTLS's two recv calls per record (header, then body) into one recv for
 *    many small records.
 *  - Once the handshake is over, a socket whose suite ipsec-mb seals (all of ours) leaves its
 *    records to io_tls_records.c (records_start): mbedTLS's own ciphers cost 40 times as much
 *    per 16 KiB record.  WSK_TLS_RECORDS=mbedtls in the environment keeps mbedTLS's records.
 *
 * State: the mbedTLS configuration (certificates, keys, RNG) is shared by all the sockets of a
 * server or client in ctx->tls, and by the members of a server group that load the same
 * certificate (wsk_tls_server_share), whichever thread runs them; each TLS socket has a session
 * in c->cold->tls. */
#include "io_tls.h"
#include "io_tls_records.h"
#include "io_transport.h"

#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/rsa.h>
#include <mbedtls/version.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_internal.h> /* handshake->resume; mbedtls_ssl_write_record (write_record) */
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509.h>
#include <mbedtls/x509_crt.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define TLS_CHUNK     16384 /* plaintext bytes per record, the TLS maximum (RFC 5246 6.2.1) */
#define TLS_READAHEAD 4096  /* recv size for small reads: several small records per call */
#define TLS_FLIGHT    4096  /* handshake records gathered into one send (an ECDSA flight: 1 KiB) */
#define TICKET_LIFETIME                                                                            \
    3600                    /* s: a ticket is valid this long; its key signs as long (then a       \
                             * new one does) and reads as long again */
#define CACHE_ENTRIES  1024 /* sessions kept for clients without tickets (a list, searched) */
#define CACHE_TIMEOUT  3600 /* s */
#define SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"
#define SYSTEM_CA_DIR  "/etc/ssl/certs"

/* Forward secrecy (ECDHE) and AEAD ciphers only.  The server's order decides (mbedTLS keeps its
 * own preference), and a client offers the same order.  With mbedTLS's records, ChaCha20-Poly1305
 * first: mbedTLS 2.28 seals a record of 256 bytes or more 1.4 to 1.7 times faster with it than
 * with its AES-128-GCM, even with AES-NI and PCLMUL (16 KiB records: 338 against 214 MB/s on an
 * AMD EPYC, scripts/tls-floor.c).  With ipsec-mb's (io_tls_records.c) on a CPU with AES-NI,
 * AES-GCM first (fast_suites): there it seals 16 KiB three times faster than its ChaCha20 (14.5
 * against 4.7 GB/s, with VAES), and small records ten times faster. */
static const int fast_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};
static const int modern_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    0,
};

/* Key exchange groups (and the curves accepted for ECDSA certificates), the server's choice in
 * this order: X25519 first, the cheaper ECDHE in mbedTLS 2.28 (1.1 against 1.4 ms of server CPU
 * for P-256, whose comb table mbedTLS builds anew for every handshake; scripts/tls-floor.c). */
static const mbedtls_ecp_group_id modern_curves[] = {
    MBEDTLS_ECP_DP_CURVE25519, MBEDTLS_ECP_DP_SECP256R1, MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_SECP521R1,  MBEDTLS_ECP_DP_NONE,
};

/* ctx->tls: what every TLS socket of one server or client shares (or of the members of a group
 * that share it: see wsk_tls_server_share).  Shared across threads, it is read-only once made,
 * apart from the parts mbedTLS locks itself (built with MBEDTLS_THREADING_C, as Debian's is): the
 * DRBG, the ticket keys, the session cache, an RSA key's blinding values.  One DRBG for all the
 * threads rather than one each: a full handshake draws from it about 10 times (a resumed one
 * once), and two threads drawing nothing else cost the same per draw either way, 0.22 us on a
 * loaded AMD EPYC (scripts/tls-floor.c), a thousandth of the handshake's curve arithmetic. */
struct tls_conf {
    atomic_uint refs; /* the contexts using it; the last wsk_tls_ctx_free frees it */
    mbedtls_ssl_config conf;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt chain; /* our certificate chain (server; client with a certificate) */
    mbedtls_pk_context key;
    mbedtls_pk_context signer; /* an EC key as an ECDSA context, an RSA key as its copies (see
                                * fast_signer), else unused */
    struct rsa_copy *rsa;      /* an RSA key's copies, one per thread that signs with it */
    mbedtls_x509_crt ca;       /* trust anchors: for client certificates, or for servers */
    /* Server: resumption by session ticket (RFC 5077) and, for clients that send none, by
     * session ID from a cache. */
    mbedtls_ssl_ticket_context ticket;
    mbedtls_ssl_cache_context cache;
    const char *alpn[2]; /* mbedTLS keeps a pointer to this list */
    void *records;       /* ipsec-mb (io_tls_records.c), or NULL: mbedTLS's records */
};

/* c->cold->tls: one TLS socket. */
struct tls_sess {
    mbedtls_ssl_context ssl;
    struct wsk_ws *c;
    struct tls_rec *rec; /* the records after the handshake, when ipsec-mb has them */
    ev_io kick;          /* EV_WRITE on the fd while the handshake has output the kernel refused */
    unsigned hs_done : 1;
    unsigned held : 1; /* a write waits for the handshake (see hold_writes) */
    unsigned dead : 1; /* a fatal error: no more records in either direction */
    unsigned in_read : 1;
    unsigned sent_in_read : 1; /* mbedTLS wrote while reading after the handshake */
    unsigned resumed : 1;      /* the handshake resumed an earlier session */
    unsigned gather : 1;       /* handshake records go to `flight` (see bio_send) */
    int err;                   /* result for the next read, after data that came before it */
    double done_at;            /* ev_time() when the handshake completed */
    size_t pending;            /* plaintext length of the record mbedTLS holds after WANT_WRITE */
    char *host;                /* client: the name or address the certificate must be for */
    wsk_tls_session *keep;     /* client: where the session goes once the handshake is over */
    char *why;                 /* why the handshake failed (wsk_tls_failure), malloc'd */
    uint8_t ip[16];            /* client: the server's address when the URL names one */
    size_t iplen;
    char peer[64];    /* server: the client's address from accept (see wsk_tcp_accept) */
    uint8_t first[4]; /* the first bytes the peer sent: tells plaintext HTTP from TLS */
    size_t nfirst;
    uint8_t *flight; /* handshake records not sent yet (TLS_FLIGHT bytes, malloc'd) */
    size_t flight_len;
    size_t ra_off, ra_len; /* read-ahead bytes not yet handed to mbedTLS */
    uint8_t ra[TLS_READAHEAD];
};

static struct tls_sess *sess_of(struct wsk_ws *c)
{
    return c->cold ? c->cold->tls : NULL;
}

static const char *tls_strerror(int ret, char *buf, size_t cap)
{
    mbedtls_strerror(ret, buf, cap);
    return buf;
}

/* ----- socket callbacks for mbedTLS ---------------------------------------------------------- */

static void note_first(struct tls_sess *s, const uint8_t *p, size_t n)
{
    while (s->nfirst < sizeof s->first && n--) s->first[s->nfirst++] = *p++;
}

/* Reads of less than the read-ahead size fill the read-ahead buffer and are served from it;
 * larger reads (the body of a big record) go straight into mbedTLS's buffer. */
static int bio_recv(void *arg, unsigned char *buf, size_t len)
{
    struct tls_sess *s = arg;
    if (s->ra_len) {
        size_t n = len < s->ra_len ? len : s->ra_len;
        memcpy(buf, s->ra + s->ra_off, n);
        s->ra_off += n;
        s->ra_len -= n;
        return (int)n;
    }
    int direct = len >= sizeof s->ra;
    ssize_t r;
    do r = recv(s->c->io.fd, direct ? buf : s->ra, direct ? len : sizeof s->ra, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return MBEDTLS_ERR_SSL_WANT_READ;
        if (errno == ECONNRESET || errno == EPIPE) return MBEDTLS_ERR_NET_CONN_RESET;
        return MBEDTLS_ERR_NET_RECV_FAILED;
    }
    if (r == 0) return 0; /* EOF: mbedTLS reports MBEDTLS_ERR_SSL_CONN_EOF */
    note_first(s, direct ? buf : s->ra, (size_t)r);
    if (direct) return (int)r;
    size_t n = len < (size_t)r ? len : (size_t)r;
    memcpy(buf, s->ra, n);
    s->ra_off = n;
    s->ra_len = (size_t)r - n;
    return (int)n;
}

static int sock_send(struct tls_sess *s, const unsigned char *buf, size_t len)
{
    ssize_t r;
    do r = send(s->c->io.fd, buf, len, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r >= 0) return (int)r;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return MBEDTLS_ERR_SSL_WANT_WRITE;
    if (errno == ECONNRESET || errno == EPIPE) return MBEDTLS_ERR_NET_CONN_RESET;
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

/* Sends what is gathered in `flight`: 0 when all of it left, MBEDTLS_ERR_SSL_WANT_WRITE when the
 * kernel took only part (the rest stays), another error when the socket failed. */
static int flight_flush(struct tls_sess *s)
{
    while (s->flight_len) {
        int r = sock_send(s, s->flight, s->flight_len);
        if (r < 0) return r;
        s->flight_len -= (size_t)r;
        memmove(s->flight, s->flight + r, s->flight_len);
    }
    if (s->hs_done) { /* no more flights */
        free(s->flight);
        s->flight = NULL;
    }
    return 0;
}

/* mbedTLS 2.28 sends each handshake message in a record of its own, one send each: the server's
 * first flight (ServerHello, Certificate, ServerKeyExchange, ServerHelloDone) would take four
 * segments.  While the handshake runs (`gather`), records are kept in `flight` and handshake()
 * sends each flight in one call.  Anything sent later goes after what is left of it. */
static int bio_send(void *arg, const unsigned char *buf, size_t len)
{
    struct tls_sess *s = arg;
    if (s->in_read && s->hs_done) s->sent_in_read = 1;
    if (s->gather && !s->flight) s->flight = malloc(TLS_FLIGHT);
    if (s->flight_len + len > TLS_FLIGHT || !s->gather) {
        int r = s->flight_len ? flight_flush(s) : 0;
        if (r < 0) return r;
    }
    if (s->gather && s->flight && s->flight_len + len <= TLS_FLIGHT) {
        memcpy(s->flight + s->flight_len, buf, len);
        s->flight_len += len;
        return (int)len;
    }
    return sock_send(s, buf, len); /* a record too large to gather, or no memory for it */
}

/* mbedTLS 2.28 matches only DNS names; a URL with an address (wss://127.0.0.1/) is checked here
 * against the certificate's iPAddress entries (RFC 5280 4.2.1.6, RFC 6125 6.2.1). */
static int verify_ip(void *arg, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    const struct tls_sess *s = arg;
    if (depth != 0) return 0;
    if (crt->ext_types & MBEDTLS_X509_EXT_SUBJECT_ALT_NAME) {
        for (const mbedtls_x509_sequence *san = &crt->subject_alt_names; san; san = san->next) {
            const mbedtls_x509_buf *b = &san->buf;
            if ((b->tag & MBEDTLS_ASN1_TAG_CLASS_MASK) == MBEDTLS_ASN1_CONTEXT_SPECIFIC &&
                (b->tag & MBEDTLS_ASN1_TAG_VALUE_MASK) == MBEDTLS_X509_SAN_IP_ADDRESS &&
                b->len == s->iplen && !memcmp(b->p, s->ip, s->iplen))
                return 0;
        }
    }
    *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* ----- why a handshake failed, in one line --------------------------------------------------- */

static const char *alert_name(unsigned a)
{
    switch (a) {
    case 10: return "unexpected message";
    case 20: return "bad record MAC";
    case 40: return "handshake failure";
    case 42: return "bad certificate";
    case 43: return "unsupported certificate";
    case 44: return "certificate revoked";
    case 45: return "certificate expired";
    case 46: return "certificate unknown";
    case 47: return "illegal parameter";
    case 48: return "unknown CA";
    case 49: return "access denied";
    case 50: return "decode error";
    case 51: return "decrypt error";
    case 70: return "protocol version";
    case 71: return "insufficient security";
    case 80: return "internal error";
    case 90: return "user canceled";
    case 112: return "unrecognized name";
    case 116: return "certificate required";
    case 120: return "no application protocol";
    default: return "alert";
    }
}

/* The certificate problems in `flags` as a short list: "expired, unknown issuer". */
static void verify_reasons(const struct tls_sess *s, uint32_t flags, char *buf, size_t cap)
{
    static const struct {
        uint32_t flags;
        const char *why;
    } reasons[] = {
        {MBEDTLS_X509_BADCERT_EXPIRED, "expired"},
        {MBEDTLS_X509_BADCERT_FUTURE, "not yet valid"},
        {MBEDTLS_X509_BADCERT_NOT_TRUSTED, "unknown issuer (not signed by a trusted CA)"},
        {MBEDTLS_X509_BADCERT_CN_MISMATCH, "name mismatch"},
        {MBEDTLS_X509_BADCERT_REVOKED, "revoked"},
        {MBEDTLS_X509_BADCERT_MISSING, "no certificate"},
        {MBEDTLS_X509_BADCERT_KEY_USAGE | MBEDTLS_X509_BADCERT_EXT_KEY_USAGE |
             MBEDTLS_X509_BADCERT_NS_CERT_TYPE,
         "not valid for this use"},
        {MBEDTLS_X509_BADCERT_BAD_MD | MBEDTLS_X509_BADCERT_BAD_PK | MBEDTLS_X509_BADCERT_BAD_KEY,
         "weak or unsupported signature or key"},
    };
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0] && n < cap; i++) {
        if (!(flags & reasons[i].flags)) continue;
        int w = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", reasons[i].why);
        if (w > 0) n += (size_t)w;
        if (reasons[i].flags == MBEDTLS_X509_BADCERT_CN_MISMATCH && s->host && n < cap) {
            w = snprintf(buf + n, cap - n, " (the certificate is not for %s)", s->host);
            if (w > 0) n += (size_t)w;
        }
    }
    if (!n) snprintf(buf, cap, "verification flags 0x%x", (unsigned)flags);
}

static int looks_like_http(const uint8_t *p, size_t n)
{
    if (n < 3) return 0;
    for (size_t i = 0; i < 3; i++)
        if (p[i] < 'A' || p[i] > 'Z') return 0;
    return 1;
}

/* The fatal alert the peer sent before resetting the connection, or -1.  A send that fails with
 * a reset leaves mbedTLS no chance to read it, but it may still wait in the kernel: TLS 1.2
 * alerts before ChangeCipherSpec are plaintext (RFC 5246 7.2). */
static int alert_before_reset(const struct tls_sess *s)
{
    uint8_t b[7];
    const uint8_t *p = b;
    ssize_t n;
    if (s->ra_len) {
        p = s->ra + s->ra_off;
        n = (ssize_t)s->ra_len;
    } else {
        n = recv(s->c->io.fd, b, sizeof b, MSG_DONTWAIT);
    }
    return n >= 7 && p[0] == MBEDTLS_SSL_MSG_ALERT && p[5] == MBEDTLS_SSL_ALERT_LEVEL_FATAL ? p[6]
                                                                                            : -1;
}

static void describe_alert(const struct wsk_ws *c, int alert, char *buf, size_t cap)
{
    const struct tls_conf *t = c->ctx->tls;
    int server = c->ctx->role == WSK_ROLE_SERVER;
    /* RFC 5246 7.4.6: a server that requires a certificate answers its absence with
     * handshake_failure; TLS 1.3 servers say certificate_required. */
    int cert_hint = !server && (alert == 40 || alert == 116) && !t->chain.version;
    snprintf(buf, cap, "the %s sent fatal alert %d (%s)%s", server ? "client" : "server", alert,
             alert_name((unsigned)alert), cert_hint ? ": it may require a client certificate" : "");
}

/* Writes why the handshake failed into buf; returns WSK_ERR_CERT for a certificate the client
 * rejected, WSK_ERR_TLS otherwise. */
static int describe_failure(const struct wsk_ws *c, const struct tls_sess *s, int ret, char *buf,
                            size_t cap)
{
    char tmp[160];
    const mbedtls_ssl_context *ssl = &s->ssl;
    int server = c->ctx->role == WSK_ROLE_SERVER;
    /* TLS records start with a content type from 20 to 23 (RFC 5246 6.2.1). */
    if (s->nfirst && (s->first[0] < 20 || s->first[0] > 23)) {
        if (looks_like_http(s->first, s->nfirst))
            snprintf(buf, cap,
                     server ? "plaintext HTTP on a TLS port"
                            : "the server answered in plaintext HTTP (not a TLS port)");
        else
            snprintf(buf, cap, "not TLS (first byte 0x%02x)", s->first[0]);
        return WSK_ERR_TLS;
    }
    switch (ret) {
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
        verify_reasons(s, mbedtls_ssl_get_verify_result(ssl), tmp, sizeof tmp);
        snprintf(buf, cap, "%scertificate verify failed: %s", server ? "client " : "", tmp);
        return server ? WSK_ERR_TLS : WSK_ERR_CERT;
    case MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE:
        snprintf(buf, cap, "the client sent no certificate (one is required)");
        break;
    case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
        /* mbedTLS 2.28 leaves the alert in the record it read. */
        describe_alert(
            c, ssl->in_msgtype == MBEDTLS_SSL_MSG_ALERT && ssl->in_msglen >= 2 ? ssl->in_msg[1] : 0,
            buf, cap);
        break;
    case 0:
    case MBEDTLS_ERR_SSL_CONN_EOF:
        snprintf(buf, cap, "the %s closed the connection during the TLS handshake",
                 server ? "client" : "server");
        break;
    case MBEDTLS_ERR_NET_CONN_RESET:
    case MBEDTLS_ERR_NET_SEND_FAILED: {
        int alert = alert_before_reset(s);
        if (alert >= 0)
            describe_alert(c, alert, buf, cap);
        else
            snprintf(buf, cap, "connection reset during the TLS handshake");
        break;
    }
    case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
        snprintf(buf, cap, "no cipher suite in common (ECDHE with AES-GCM or ChaCha20 needed)");
        break;
    case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
        snprintf(buf, cap, "protocol version not supported (TLS 1.2 needed)");
        break;
    case MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO: snprintf(buf, cap, "malformed ClientHello"); break;
    default: snprintf(buf, cap, "%s", tls_strerror(ret, tmp, sizeof tmp)); break;
    }
    return WSK_ERR_TLS;
}

/* ----- client sessions to resume ------------------------------------------------------------- */

struct wsk_tls_session {
    mbedtls_ssl_session sess;
    int have;         /* sess holds a session (with a ticket, or an ID the server may cache) */
    char server[300]; /* "host:port" it was made with */
};

wsk_tls_session *wsk_tls_session_new(void)
{
    wsk_tls_session *ts = calloc(1, sizeof *ts);
    if (ts) mbedtls_ssl_session_init(&ts->sess);
    return ts;
}

void wsk_tls_session_free(wsk_tls_session *ts)
{
    if (!ts) return;
    mbedtls_ssl_session_free(&ts->sess);
    free(ts);
}

/* The handshake is over: the session (resumed, or new with the server's latest ticket) replaces
 * the one kept. */
static void session_keep(struct tls_sess *s)
{
    wsk_tls_session *ts = s->keep;
    s->keep = NULL;
    mbedtls_ssl_session_free(&ts->sess);
    mbedtls_ssl_session_init(&ts->sess);
    ts->have = !mbedtls_ssl_get_session(&s->ssl, &ts->sess);
}

int wsk_tls_session_use(struct wsk_ws *c, wsk_tls_session *ts, const char *server)
{
    struct tls_sess *s = sess_of(c);
    if (!s || !ts) return 0;
    /* Another server (a redirect, another port) gets a full handshake, and this one's session
     * replaces the kept one. */
    if (strcmp(ts->server, server)) {
        ts->have = 0;
        snprintf(ts->server, sizeof ts->server, "%s", server);
    }
    s->keep = ts;
    /* A session the server no longer knows costs nothing more than a full handshake. */
    if (ts->have && mbedtls_ssl_set_session(&s->ssl, &ts->sess)) ts->have = 0;
    return ts->have;
}

int wsk_tls_resumed(const wsk_ws *ws)
{
    const struct tls_sess *s = ws && (ws->flags & WSK_F_TLS) && ws->cold ? ws->cold->tls : NULL;
    return s && s->hs_done && s->resumed;
}

/* ----- handshake ------------------------------------------------------------------------------ */

/* Writes wait while the handshake runs: mbedTLS would only answer WANT_READ, and a writable
 * socket would wake the loop for nothing.  Setting WSK_F_WANT_WRITE without EV_WRITE makes
 * send_flush.c leave the watcher as it is; handshake_done undoes it. */
static void hold_writes(struct wsk_ws *c, struct tls_sess *s)
{
    s->held = 1;
    c->flags |= WSK_F_WANT_WRITE;
    if (c->io.events & EV_WRITE) wsk_conn_io_events(c, EV_READ);
}

static void on_kick(struct ev_loop *ev, ev_io *w, int revents)
{
    (void)revents;
    struct wsk_ws *c = w->data;
    struct tls_sess *s = sess_of(c);
    /* The rest of a flight goes first: the handshake may be over, with nothing else to send. */
    int r = s->flight_len ? flight_flush(s) : 0;
    if (r == MBEDTLS_ERR_SSL_WANT_WRITE) return;
    if (r < 0 && !s->err) s->err = WSK_ERR_IO;
    ev_io_stop(ev, w);
    ev_feed_event(ev, &c->io, EV_READ);
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

/* Hands the socket's records to io_tls_records.c when ipsec-mb seals the suite.  The keys are
 * the key block of RFC 5246 6.3 (client key, server key, client IV, server IV), derived again
 * from the session's master secret and the two randoms mbedTLS keeps in the transform
 * (MBEDTLS_SSL_CONTEXT_SERIALIZATION): mbedTLS 2.28's key export callback belongs to the
 * configuration that all sockets and threads share, and could not tell whose keys it got.  The
 * derived IVs must equal the transform's, the sequence numbers must be 1 (the Finished messages
 * were 0) and mbedTLS must hold nothing unread or unsent: anything else keeps mbedTLS's records. */
static void records_start(struct tls_sess *s, const struct tls_conf *t)
{
    mbedtls_ssl_context *ssl = &s->ssl;
    const mbedtls_ssl_transform *tr = ssl->transform;
    const mbedtls_ssl_ciphersuite_t *cs =
        mbedtls_ssl_ciphersuite_from_id(ssl->session->ciphersuite);
    if (!t->records || !cs || !tr || tr != ssl->transform_in || tr != ssl->transform_out ||
        ssl->out_left || mbedtls_ssl_check_pending(ssl) || get64(ssl->cur_out_ctr) != 1 ||
        get64(ssl->in_ctr) != 1)
        return;
    struct tls_rec_keys k = {0};
    size_t ivlen = 4;
    switch (cs->cipher) {
    case MBEDTLS_CIPHER_AES_128_GCM: k.aead = TLS_REC_AES128_GCM, k.key_len = 16; break;
    case MBEDTLS_CIPHER_AES_256_GCM: k.aead = TLS_REC_AES256_GCM, k.key_len = 32; break;
    case MBEDTLS_CIPHER_CHACHA20_POLY1305:
        k.aead = TLS_REC_CHACHA20_POLY1305, k.key_len = 32, ivlen = 12;
        break;
    default: return;
    }
    unsigned char blk[2 * 32 + 2 * 12];
    size_t klen = k.key_len;
    int server = ssl->conf->endpoint == MBEDTLS_SSL_IS_SERVER;
    if (tr->fixed_ivlen == ivlen &&
        !mbedtls_ssl_tls_prf(cs->mac == MBEDTLS_MD_SHA384 ? MBEDTLS_SSL_TLS_PRF_SHA384
                                                          : MBEDTLS_SSL_TLS_PRF_SHA256,
                             ssl->session->master, sizeof ssl->session->master, "key expansion",
                             tr->randbytes, sizeof tr->randbytes, blk, 2 * klen + 2 * ivlen)) {
        const unsigned char *client_key = blk, *server_key = blk + klen;
        const unsigned char *client_iv = blk + 2 * klen, *server_iv = client_iv + ivlen;
        memcpy(k.out_key, server ? server_key : client_key, klen);
        memcpy(k.in_key, server ? client_key : server_key, klen);
        memcpy(k.out_iv, server ? server_iv : client_iv, ivlen);
        memcpy(k.in_iv, server ? client_iv : server_iv, ivlen);
        k.out_seq = k.in_seq = 1;
        if (!memcmp(k.out_iv, tr->iv_enc, ivlen) && !memcmp(k.in_iv, tr->iv_dec, ivlen))
            s->rec = tls_rec_new(t->records, &k, ssl->in_buf, MBEDTLS_SSL_IN_BUFFER_LEN,
                                 ssl->out_buf, MBEDTLS_SSL_OUT_BUFFER_LEN);
    }
    mbedtls_platform_zeroize(blk, sizeof blk);
    mbedtls_platform_zeroize(&k, sizeof k);
    /* Records that came with the peer's Finished wait in the read-ahead buffer. */
    if (s->rec && s->ra_len) {
        tls_rec_input(s->rec, s->ra + s->ra_off, s->ra_len);
        s->ra_len = 0;
    }
}

static void handshake_done(struct wsk_ws *c, struct tls_sess *s)
{
    wsk_loop *loop = c->ctx->loop;
    s->hs_done = 1;
    c->ctx->stats.tls_handshakes++;
    c->ctx->stats.tls_resumed += s->resumed;
    s->done_at = ev_time();
    if (!s->flight_len) { /* else the kick sends the rest of the last flight */
        ev_io_stop(loop->ev, &s->kick);
        free(s->flight);
        s->flight = NULL;
    }
    if (s->held) {
        s->held = 0;
        c->flags &= ~WSK_F_WANT_WRITE;
    }
    if (c->q.bytes) wsk_loop_schedule(loop, c);
    if (s->keep) session_keep(s);
    records_start(s, c->ctx->tls);
    if (loop->log_fn && loop->log_level >= WSK_LOG_DEBUG) {
        char addr[64];
        const char *alpn = mbedtls_ssl_get_alpn_protocol(&s->ssl);
        wsk_log(loop, WSK_LOG_DEBUG, "%s: %s, %s%s%s%s, records sealed by %s",
                wsk_addr_string(c->io.fd, addr, sizeof addr), mbedtls_ssl_get_version(&s->ssl),
                mbedtls_ssl_get_ciphersuite(&s->ssl), alpn ? ", ALPN " : "", alpn ? alpn : "",
                s->resumed ? ", resumed" : "", wsk_tls_records(c));
    }
}

/* Bytes left unread when the fd is closed make the kernel answer with a reset, which can destroy
 * the alert just sent before the peer reads it: take in what has arrived (bounded). */
static void drain_input(int fd)
{
    char b[4096];
    for (int i = 0; i < 16 && recv(fd, b, sizeof b, MSG_DONTWAIT) > 0; i++) {
    }
}

/* The handshake failed: one line for the server's log; the reason kept for wsk_tls_failure (the
 * client's error handler shows it).  Returns WSK_ERR_CERT or WSK_ERR_TLS; the caller ends the
 * connection. */
static int handshake_failed(struct wsk_ws *c, struct tls_sess *s, int ret)
{
    char why[256];
    int server = c->ctx->role == WSK_ROLE_SERVER;
    int err = describe_failure(c, s, ret, why, sizeof why);
    s->dead = 1;
    if (server) {
        /* mbedTLS ends without telling the client why; RFC 5246 7.4.6 names the alert. */
        if (ret == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE)
            mbedtls_ssl_send_alert_message(&s->ssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                           MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
        drain_input(c->io.fd);
        /* A client that connects and leaves is routine; anything else is worth a warning. */
        int quiet = (ret == MBEDTLS_ERR_SSL_CONN_EOF || ret == 0) && !s->nfirst;
        if (!quiet)
            c->ctx->stats.refused[err == WSK_ERR_CERT ? WSK_REFUSED_TLS_CERT : WSK_REFUSED_TLS]++;
        wsk_log(c->ctx->loop, quiet ? WSK_LOG_INFO : WSK_LOG_WARN, "%s: TLS handshake failed: %s",
                s->peer, why);
    }
    char msg[300];
    snprintf(msg, sizeof msg, "%s%s", err == WSK_ERR_CERT ? "" : "TLS handshake failed: ", why);
    free(s->why);
    s->why = strdup(msg);
    return err;
}

/* Advances the handshake: 0 once it is over, WSK_ERR_AGAIN while it waits for the peer or for
 * room in the kernel, WSK_ERR_CERT or WSK_ERR_TLS when it failed. */
static int handshake(struct wsk_ws *c, struct tls_sess *s)
{
    /* mbedtls_ssl_handshake, one step at a time: whether the session was resumed is known only
     * while the handshake runs (mbedTLS frees that state when it ends). */
    int r = s->flight_len ? flight_flush(s) : 0;
    s->gather = 1;
    while (!r && s->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
        r = mbedtls_ssl_handshake_step(&s->ssl);
        /* A client sets it when it offers a session, and clears it if the server declines. */
        if (s->ssl.handshake) s->resumed = s->ssl.handshake->resume != 0;
    }
    s->gather = 0;
    /* The flight (or a fatal alert) leaves now; the kick sends what the kernel refused. */
    int f = s->flight_len ? flight_flush(s) : 0;
    if (f == MBEDTLS_ERR_SSL_WANT_WRITE) ev_io_start(c->ctx->loop->ev, &s->kick);
    if (f < 0 && f != MBEDTLS_ERR_SSL_WANT_WRITE && (r == 0 || r == MBEDTLS_ERR_SSL_WANT_READ))
        r = f;
    if (r == 0) {
        handshake_done(c, s);
        return 0;
    }
    if (r == MBEDTLS_ERR_SSL_WANT_READ) return WSK_ERR_AGAIN;
    if (r == MBEDTLS_ERR_SSL_WANT_WRITE) {
        ev_io_start(c->ctx->loop->ev, &s->kick);
        return WSK_ERR_AGAIN;
    }
    return handshake_failed(c, s, r);
}

/* ----- reading and writing -------------------------------------------------------------------- */

/* A read failed after the handshake.  The peer's close_notify or EOF is the end of the stream;
 * other failures are logged when they are the peer's doing (a forged or corrupted record, a
 * fatal alert) and end the connection. */
static int read_failed(struct wsk_ws *c, struct tls_sess *s, int ret)
{
    char addr[64], why[160];
    if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF)
        return WSK_ERR_EOF;
    s->dead = 1;
    if (ret == MBEDTLS_ERR_NET_CONN_RESET || ret == MBEDTLS_ERR_NET_RECV_FAILED) return WSK_ERR_IO;
    wsk_log(c->ctx->loop, ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ? WSK_LOG_INFO : WSK_LOG_WARN,
            "%s: TLS error: %s", wsk_addr_string(c->io.fd, addr, sizeof addr),
            ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE ? "the peer sent a fatal alert"
                                                       : tls_strerror(ret, why, sizeof why));
    return WSK_ERR_IO;
}

/* Input that is already here (read-ahead, or a record mbedTLS holds) wakes no watcher. */
static int input_buffered(const struct tls_sess *s)
{
    if (s->rec) return tls_rec_buffered(s->rec);
    return s->ra_len || mbedtls_ssl_check_pending(&s->ssl);
}

/* wsk_tls_read once io_tls_records.c has the records: the same results, the same log lines
 * (read_failed) as mbedTLS's errors would give. */
static long records_read(struct wsk_ws *c, struct tls_sess *s, uint8_t *buf, size_t cap)
{
    long n = tls_rec_read(s->rec, c->io.fd, buf, cap);
    if (n > 0) {
        if (input_buffered(s)) ev_feed_event(c->ctx->loop->ev, &c->io, EV_READ);
        return n;
    }
    char addr[64];
    switch (n) {
    case TLS_REC_AGAIN: return WSK_ERR_AGAIN;
    case TLS_REC_EOF: return WSK_ERR_EOF;
    case TLS_REC_ERR_MAC: return read_failed(c, s, MBEDTLS_ERR_SSL_INVALID_MAC);
    case TLS_REC_ERR_DECODE: return read_failed(c, s, MBEDTLS_ERR_SSL_INVALID_RECORD);
    case TLS_REC_ERR_ALERT: return read_failed(c, s, MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE);
    case TLS_REC_ERR_SEQ: return read_failed(c, s, MBEDTLS_ERR_SSL_COUNTER_WRAPPING);
    case TLS_REC_ERR_RENEGO:
        wsk_log(c->ctx->loop, WSK_LOG_WARN, "%s: TLS renegotiation refused, closing",
                wsk_addr_string(c->io.fd, addr, sizeof addr));
        break;
    default: break;
    }
    s->dead = 1;
    return WSK_ERR_IO;
}

long wsk_tls_read(struct wsk_ws *c, uint8_t *buf, size_t cap)
{
    struct tls_sess *s = sess_of(c);
    if (!s || s->dead) return WSK_ERR_IO;
    if (s->err) return s->err;
    if (!s->hs_done) {
        int r = handshake(c, s);
        if (r < 0) return r;
    }
    if (s->rec) return records_read(c, s, buf, cap);
    size_t got = 0;
    int idle = 0;
    while (got < cap) {
        s->in_read = 1;
        int r = mbedtls_ssl_read(&s->ssl, buf + got, cap - got);
        s->in_read = 0;
        int e;
        if (s->sent_in_read && (r > 0 || r == MBEDTLS_ERR_SSL_WANT_READ)) {
            /* Only a renegotiation attempt makes mbedTLS write while it reads and go on (it
             * refuses with an alert; a record that fails its MAC check gets a fatal alert too,
             * and is a failure: read_failed).  That alert may have flushed a record held after
             * WANT_WRITE, which would then be written twice: no WebSocket peer renegotiates, so end
             * here. */
            char addr[64];
            wsk_log(c->ctx->loop, WSK_LOG_WARN, "%s: TLS renegotiation refused, closing",
                    wsk_addr_string(c->io.fd, addr, sizeof addr));
            s->dead = 1;
            e = WSK_ERR_IO;
        } else if (r > 0) {
            got += (size_t)r;
            continue;
        } else if (r == MBEDTLS_ERR_SSL_WANT_READ) {
            /* Also the answer to a warning alert or an empty record: go on while input is
             * buffered (bounded, in case mbedTLS keeps a message it cannot use yet). */
            if (input_buffered(s) && ++idle < 64) continue;
            break;
        } else {
            e = read_failed(c, s, r);
        }
        if (!got) return e;
        s->err = e; /* hand over the data first; the next read reports the end */
        ev_feed_event(c->ctx->loop->ev, &c->io, EV_READ);
        return (long)got;
    }
    if (got == cap && input_buffered(s)) ev_feed_event(c->ctx->loop->ev, &c->io, EV_READ);
    return got ? (long)got : WSK_ERR_AGAIN;
}

/* A position in an iovec array. */
struct iov_pos {
    int i;
    size_t off;
};

static void iov_skip(const struct iovec *iov, int n, struct iov_pos *p, size_t len)
{
    while (len && p->i < n) {
        size_t left = iov[p->i].iov_len - p->off;
        if (len < left) {
            p->off += len;
            return;
        }
        len -= left;
        p->i++;
        p->off = 0;
    }
}

/* Up to cap bytes from p onwards (p does not move) as pieces of the segments, at most
 * WSK_IOV_MAX in piece[] (*count of them); returns how many bytes. */
static size_t iov_pieces(const struct iovec *iov, int n, struct iov_pos p, size_t cap,
                         struct iovec piece[WSK_IOV_MAX], int *count)
{
    size_t got = 0;
    int k = 0;
    for (; p.i < n && got < cap && k < WSK_IOV_MAX; p.i++, p.off = 0) {
        size_t left = iov[p.i].iov_len - p.off;
        size_t take = left < cap - got ? left : cap - got;
        if (!take) continue;
        piece[k].iov_base = (uint8_t *)iov[p.i].iov_base + p.off;
        piece[k++].iov_len = take;
        got += take;
    }
    *count = k;
    return got;
}

/* Copies up to cap bytes from p onwards into dst (p does not move); returns how many. */
static size_t iov_gather(const struct iovec *iov, int n, struct iov_pos p, uint8_t *dst, size_t cap)
{
    struct iovec piece[WSK_IOV_MAX];
    int k;
    size_t got = iov_pieces(iov, n, p, cap, piece, &k);
    for (int i = 0; i < k; dst += piece[i++].iov_len)
        memcpy(dst, piece[i].iov_base, piece[i].iov_len);
    return got;
}

/* Bytes from p onwards, counted up to `want`. */
static size_t iov_avail(const struct iovec *iov, int n, struct iov_pos p, size_t want)
{
    size_t got = 0;
    for (; p.i < n && got < want; p.i++, p.off = 0) got += iov[p.i].iov_len - p.off;
    return got;
}

/* One record of application data, up to `room` bytes from p: mbedtls_ssl_write as mbedTLS 2.28
 * does it (ssl_write_real: the plaintext into out_msg, sealed there by mbedtls_ssl_write_record),
 * except that the plaintext is gathered from the queue's segments straight into out_msg rather
 * than first into one buffer of ours.  A record held after WANT_WRITE is complete in mbedTLS's
 * buffer: it is only flushed, and counts as the `pending` bytes it was made of.  Returns those
 * bytes, or an mbedTLS error (MBEDTLS_ERR_SSL_WANT_WRITE: the record waits, sealed). */
static int write_record(struct tls_sess *s, const struct iovec *iov, int n, struct iov_pos p,
                        size_t room)
{
    mbedtls_ssl_context *ssl = &s->ssl;
    if (ssl->out_left) {
        /* The queue still holds the bytes the record was made of (they are not reported written
         * before it is out); a queue that lost them is a bug, not a state to go on from. */
        if (iov_avail(iov, n, p, s->pending) < s->pending) return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
        int r = mbedtls_ssl_flush_output(ssl);
        return r ? r : (int)s->pending;
    }
    size_t len = iov_gather(iov, n, p, ssl->out_msg, room);
    ssl->out_msglen = len;
    ssl->out_msgtype = MBEDTLS_SSL_MSG_APPLICATION_DATA;
    s->pending = len;
    int r = mbedtls_ssl_write_record(ssl, 1);
    return r ? r : (int)len;
}

/* wsk_tls_writev once io_tls_records.c has the records: as many records as its buffer holds
 * are sealed from the queue's segments (read in place: no copy before the cipher's), then sent
 * at once.  Sealed records the kernel did not take wait there; `pending` counts the queue's
 * bytes they carry, reported written once they are all out. */
static long records_writev(struct wsk_ws *c, struct tls_sess *s, const struct iovec *iov, int n)
{
    int r = s->flight_len ? flight_flush(s) : 0; /* the end of the last flight goes first */
    if (r == MBEDTLS_ERR_SSL_WANT_WRITE) return WSK_ERR_AGAIN;
    struct iov_pos p = {0, 0};
    if (r < 0 || iov_avail(iov, n, p, s->pending) < s->pending) {
        s->dead = 1;
        return WSK_ERR_IO;
    }
    iov_skip(iov, n, &p, s->pending);
    long done = 0;
    for (;;) {
        if (!tls_rec_unsent(s->rec)) { /* fill the buffer, then send it */
            struct iovec piece[WSK_IOV_MAX];
            size_t room, len;
            int k;
            /* A record is cut short only by the end of what is queued, not by the end of the
             * buffer: those bytes wait for the next fill (fewer records, and fewer bytes). */
            while ((room = tls_rec_room(s->rec)) &&
                   (room == TLS_REC_PLAIN_MAX || iov_avail(iov, n, p, room + 1) <= room) &&
                   (len = iov_pieces(iov, n, p, room, piece, &k))) {
                if (tls_rec_seal(s->rec, piece, k) < 0) {
                    s->dead = 1;
                    return WSK_ERR_IO;
                }
                iov_skip(iov, n, &p, len);
                s->pending += len;
            }
            if (!tls_rec_unsent(s->rec)) break;
        }
        long w = tls_rec_flush(s->rec, c->io.fd);
        if (w == TLS_REC_AGAIN) break;
        if (w < 0) {
            s->dead = 1;
            return WSK_ERR_IO;
        }
        done += w;
        s->pending = 0;
    }
    return done ? done : s->pending ? WSK_ERR_AGAIN : 0;
}

long wsk_tls_writev(struct wsk_ws *c, const struct iovec *iov, int n)
{
    struct tls_sess *s = sess_of(c);
    if (!s || s->dead) return WSK_ERR_IO;
    if (!s->hs_done) {
        int r = handshake(c, s);
        if (r == WSK_ERR_AGAIN) hold_writes(c, s);
        if (r < 0) return r;
    }
    if (s->rec) {
        long w = records_writev(c, s, iov, n);
        if (input_buffered(s)) ev_feed_event(c->ctx->loop->ev, &c->io, EV_READ);
        return w;
    }
    int max = mbedtls_ssl_get_max_out_record_payload(&s->ssl);
    size_t room = max > 0 && max < TLS_CHUNK ? (size_t)max : TLS_CHUNK;
    struct iov_pos p = {0, 0};
    long done = 0;
    for (;;) {
        while (p.i < n && p.off == iov[p.i].iov_len) {
            p.i++;
            p.off = 0;
        }
        if (p.i == n) break;
        int r = write_record(s, iov, n, p, room);
        if (r == MBEDTLS_ERR_SSL_WANT_WRITE) break;
        if (r < 0) {
            s->dead = 1;
            return WSK_ERR_IO;
        }
        s->pending = 0;
        done += r;
        iov_skip(iov, n, &p, (size_t)r);
    }
    /* The handshake may have finished here and pulled in the peer's first records. */
    if (input_buffered(s)) ev_feed_event(c->ctx->loop->ev, &c->io, EV_READ);
    return done ? done : (p.i == n ? 0 : WSK_ERR_AGAIN);
}

const char *wsk_tls_failure(struct wsk_ws *c)
{
    struct tls_sess *s = sess_of(c);
    return s && s->why ? s->why : "TLS handshake failed";
}

const char *wsk_tls_records(struct wsk_ws *c)
{
    struct tls_sess *s = c->flags & WSK_F_TLS ? sess_of(c) : NULL;
    return !s || !s->hs_done ? NULL : s->rec ? "ipsec-mb" : "mbedTLS";
}

double wsk_tls_handshake_end(struct wsk_ws *c)
{
    struct tls_sess *s = c->flags & WSK_F_TLS ? sess_of(c) : NULL;
    return s ? s->done_at : 0;
}

/* Sends close_notify (best effort: it is dropped when the kernel has no room) and frees the
 * session; the fd is closed next. */
void wsk_tls_release(struct wsk_ws *c)
{
    struct tls_sess *s = sess_of(c);
    if (!s) return;
    ev_io_stop(c->ctx->loop->ev, &s->kick);
    if (s->rec && !s->dead)
        tls_rec_alert(s->rec, c->io.fd, MBEDTLS_SSL_ALERT_LEVEL_WARNING,
                      MBEDTLS_SSL_ALERT_MSG_CLOSE_NOTIFY);
    else if (s->hs_done && !s->dead)
        mbedtls_ssl_close_notify(&s->ssl);
    tls_rec_free(s->rec); /* zeroizes the keys; mbedtls_ssl_free the buffers it borrowed */
    mbedtls_ssl_free(&s->ssl);
    free(s->flight);
    free(s->host);
    free(s->why);
    free(s);
    c->cold->tls = NULL;
    c->flags &= ~WSK_F_TLS;
}

/* ----- configuration -------------------------------------------------------------------------- */

/* One copy of an RSA key: see rsa_sign. */
struct rsa_copy {
    mbedtls_rsa_context rsa;
    atomic_flag busy;
    struct rsa_copy *next;
};

static void conf_free(struct tls_conf *t)
{
    for (struct rsa_copy *c = t->rsa, *next; c; c = next) {
        next = c->next;
        mbedtls_rsa_free(&c->rsa);
        free(c);
    }
    mbedtls_ssl_config_free(&t->conf);
    mbedtls_ssl_ticket_free(&t->ticket);
    mbedtls_ssl_cache_free(&t->cache);
    mbedtls_x509_crt_free(&t->chain);
    mbedtls_x509_crt_free(&t->ca);
    mbedtls_pk_free(&t->key);
    mbedtls_pk_free(&t->signer);
    mbedtls_ctr_drbg_free(&t->drbg);
    mbedtls_entropy_free(&t->entropy);
    tls_rec_engine_free(t->records);
    free(t);
}

void wsk_tls_ctx_free(wsk_ctx *ctx)
{
    struct tls_conf *t = ctx->tls;
    ctx->tls = NULL;
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) conf_free(t);
}

/* The settings both sides share: TLS 1.2 at least, modern suites and curves, ALPN http/1.1 (a
 * WebSocket handshake is HTTP/1.1, RFC 6455 section 4.1), no renegotiation (the default). */
static struct tls_conf *conf_new(int endpoint, char *why, size_t cap)
{
    char tmp[128];
    struct tls_conf *t = malloc(sizeof *t);
    if (!t) {
        snprintf(why, cap, "TLS: out of memory");
        return NULL;
    }
    mbedtls_ssl_config_init(&t->conf);
    mbedtls_entropy_init(&t->entropy);
    mbedtls_ctr_drbg_init(&t->drbg);
    mbedtls_x509_crt_init(&t->chain);
    mbedtls_x509_crt_init(&t->ca);
    mbedtls_pk_init(&t->key);
    mbedtls_pk_init(&t->signer);
    t->rsa = NULL;
    atomic_init(&t->refs, 1);
    mbedtls_ssl_ticket_init(&t->ticket);
    mbedtls_ssl_cache_init(&t->cache);
    t->alpn[0] = "http/1.1";
    t->alpn[1] = NULL;
    t->records = NULL;
    int r = mbedtls_ctr_drbg_seed(&t->drbg, mbedtls_entropy_func, &t->entropy,
                                  (const unsigned char *)"wskit", 5);
    if (!r)
        r = mbedtls_ssl_config_defaults(&t->conf, endpoint, MBEDTLS_SSL_TRANSPORT_STREAM,
                                        MBEDTLS_SSL_PRESET_DEFAULT);
    if (!r) r = mbedtls_ssl_conf_alpn_protocols(&t->conf, t->alpn);
    if (r) {
        snprintf(why, cap, "TLS: %s", tls_strerror(r, tmp, sizeof tmp));
        conf_free(t);
        return NULL;
    }
    mbedtls_ssl_conf_rng(&t->conf, mbedtls_ctr_drbg_random, &t->drbg);
    mbedtls_ssl_conf_min_version(&t->conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                                 MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(&t->conf, modern_suites);
    mbedtls_ssl_conf_curves(&t->conf, modern_curves);
    return t;
}

/* The record layer for a configuration that loaded: ipsec-mb unless WSK_TLS_RECORDS=mbedtls (or
 * ipsec-mb cannot start), and the suite order that suits it.  Made last, once nothing can fail:
 * ipsec-mb fills its tables for every algorithm it has (fast, but not under valgrind). */
static void conf_records(struct tls_conf *t)
{
    const char *records = getenv("WSK_TLS_RECORDS");
    t->records = records && !strcmp(records, "mbedtls") ? NULL : tls_rec_engine_new();
    if (tls_rec_engine_aesni(t->records)) mbedtls_ssl_conf_ciphersuites(&t->conf, fast_suites);
}

/* An RSA key signs under its own mutex in mbedTLS 2.28: mbedtls_rsa_private holds it for the
 * whole exponentiation (it updates the key's blinding values), so the threads of a group sharing
 * one key would sign one handshake at a time.  The key is kept as a list of copies instead, one
 * more for each member that shares the configuration (wsk_tls_server_share); a signature takes
 * the first free copy, or waits on the first one's mutex when there is none (more signers than
 * copies: a client's configuration, used on one thread, has one). */
static mbedtls_rsa_context *rsa_take(struct tls_conf *t, struct rsa_copy **took)
{
    for (struct rsa_copy *c = t->rsa; c; c = c->next)
        if (!atomic_flag_test_and_set_explicit(&c->busy, memory_order_acquire)) {
            *took = c;
            return &c->rsa;
        }
    *took = NULL;
    return &t->rsa->rsa;
}

static void rsa_give(struct rsa_copy *c)
{
    if (c) atomic_flag_clear_explicit(&c->busy, memory_order_release);
}

static int rsa_sign(void *ctx, int (*f_rng)(void *, unsigned char *, size_t), void *p_rng, int mode,
                    mbedtls_md_type_t md_alg, unsigned int hashlen, const unsigned char *hash,
                    unsigned char *sig)
{
    struct rsa_copy *c;
    mbedtls_rsa_context *rsa = rsa_take(ctx, &c);
    int r = mbedtls_rsa_pkcs1_sign(rsa, f_rng, p_rng, mode, md_alg, hashlen, hash, sig);
    rsa_give(c);
    return r;
}

/* Only ECDHE suites are offered, so nothing decrypts with the key; mbedTLS wants the function. */
static int rsa_decrypt(void *ctx, int mode, size_t *olen, const unsigned char *input,
                       unsigned char *output, size_t output_max_len)
{
    struct tls_conf *t = ctx;
    struct rsa_copy *c;
    mbedtls_rsa_context *rsa = rsa_take(t, &c);
    int r = mbedtls_rsa_pkcs1_decrypt(rsa, mbedtls_ctr_drbg_random, &t->drbg, mode, olen, input,
                                      output, output_max_len);
    rsa_give(c);
    return r;
}

static size_t rsa_len(void *ctx)
{
    return mbedtls_rsa_get_len(&((struct tls_conf *)ctx)->rsa->rsa);
}

/* One more copy of the RSA key, before any thread signs with it: 0, or an mbedTLS error. */
static int rsa_add_copy(struct tls_conf *t)
{
    struct rsa_copy *c = calloc(1, sizeof *c);
    if (!c) return MBEDTLS_ERR_MPI_ALLOC_FAILED;
    mbedtls_rsa_init(&c->rsa, MBEDTLS_RSA_PKCS_V15, 0);
    atomic_flag_clear(&c->busy);
    int r = mbedtls_rsa_copy(&c->rsa, mbedtls_pk_rsa(t->key));
    if (r) {
        mbedtls_rsa_free(&c->rsa);
        free(c);
        return r;
    }
    c->next = t->rsa;
    t->rsa = c;
    return 0;
}

/* The key that signs our handshakes.  mbedTLS 2.28 parses an EC key as a plain key pair, and
 * signing with one copies it into a new ECDSA context each time, curve included, so the table of
 * multiples of the base point (the fixed-point comb, MBEDTLS_ECP_FIXED_POINT_OPTIM) is rebuilt
 * for every signature.  The same key held as an ECDSA context keeps its table from the first
 * signature on, made here: the signature then costs about a third (scripts/tls-floor.c).  An RSA
 * key becomes its list of copies (rsa_sign).  Any failure falls back to the key as parsed. */
static mbedtls_pk_context *fast_signer(struct tls_conf *t)
{
    unsigned char hash[32] = {0}, sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t n;
    if (mbedtls_pk_get_type(&t->key) == MBEDTLS_PK_RSA) {
        if (rsa_add_copy(t) ||
            mbedtls_pk_setup_rsa_alt(&t->signer, t, rsa_decrypt, rsa_sign, rsa_len)) {
            mbedtls_pk_free(&t->signer);
            mbedtls_pk_init(&t->signer);
            return &t->key;
        }
        return &t->signer;
    }
    if (mbedtls_pk_get_type(&t->key) != MBEDTLS_PK_ECKEY ||
        mbedtls_pk_setup(&t->signer, mbedtls_pk_info_from_type(MBEDTLS_PK_ECDSA)) ||
        mbedtls_ecdsa_from_keypair(mbedtls_pk_ec(t->signer), mbedtls_pk_ec(t->key)) ||
        mbedtls_pk_sign(&t->signer, MBEDTLS_MD_SHA256, hash, sizeof hash, sig, &n,
                        mbedtls_ctr_drbg_random, &t->drbg)) {
        mbedtls_pk_free(&t->signer);
        mbedtls_pk_init(&t->signer);
        return &t->key;
    }
    return &t->signer;
}

/* Our certificate chain and its key (a key file of NULL: the key is in the certificate file). */
static int load_own(struct tls_conf *t, const char *cert, const char *key, const char *password,
                    char *why, size_t cap)
{
    char tmp[128];
    int in_cert = !key;
    if (in_cert) key = cert;
    int r = mbedtls_x509_crt_parse_file(&t->chain, cert);
    if (r) {
        snprintf(why, cap, "TLS: certificate %s: %s", cert,
                 r > 0 ? "some certificates could not be parsed"
                       : tls_strerror(r, tmp, sizeof tmp));
        return WSK_ERR_TLS;
    }
    r = mbedtls_pk_parse_keyfile(&t->key, key, password);
    /* A wrong password decrypts to garbage that mbedTLS reports as a mismatch or, depending on
     * the bytes, as a malformed key: an encrypted key that fails with a password is the former. */
    if (r && password && r != MBEDTLS_ERR_PK_PASSWORD_MISMATCH) {
        mbedtls_pk_free(&t->key);
        mbedtls_pk_init(&t->key);
        if (mbedtls_pk_parse_keyfile(&t->key, key, NULL) == MBEDTLS_ERR_PK_PASSWORD_REQUIRED)
            r = MBEDTLS_ERR_PK_PASSWORD_MISMATCH;
        mbedtls_pk_free(&t->key);
        mbedtls_pk_init(&t->key);
    }
    if (r) {
        snprintf(why, cap, "TLS: key %s: %s", key,
                 r == MBEDTLS_ERR_PK_PASSWORD_REQUIRED
                     ? "the key is encrypted: a password is needed"
                 : r == MBEDTLS_ERR_PK_PASSWORD_MISMATCH ? "wrong password"
                 /* mbedTLS says "invalid key tag" of a file with no key at all */
                 : in_cert ? "no private key in the certificate file (a key file is needed)"
                           : tls_strerror(r, tmp, sizeof tmp));
        return WSK_ERR_TLS;
    }
    if (mbedtls_pk_check_pair(&t->chain.pk, &t->key)) {
        snprintf(why, cap, "TLS: key %s does not match certificate %s", key, cert);
        return WSK_ERR_TLS;
    }
    r = mbedtls_ssl_conf_own_cert(&t->conf, &t->chain, fast_signer(t));
    if (r) {
        snprintf(why, cap, "TLS: %s", tls_strerror(r, tmp, sizeof tmp));
        return WSK_ERR_TLS;
    }
    return 0;
}

/* A CA bundle: certificates mbedTLS cannot parse are skipped (a system bundle may have some);
 * a bundle with none usable is an error. */
static int load_ca(struct tls_conf *t, const char *file, const char *dir, char *why, size_t cap)
{
    char tmp[128];
    int r = file ? mbedtls_x509_crt_parse_file(&t->ca, file) : MBEDTLS_ERR_X509_FILE_IO_ERROR;
    if (r < 0 && dir) r = mbedtls_x509_crt_parse_path(&t->ca, dir);
    if (r < 0 || t->ca.version == 0) {
        snprintf(why, cap, "TLS: CA certificates %s: %s", file ? file : dir,
                 r < 0 ? tls_strerror(r, tmp, sizeof tmp) : "no usable certificate");
        return WSK_ERR_TLS;
    }
    mbedtls_ssl_conf_ca_chain(&t->conf, &t->ca, NULL);
    return 0;
}

/* Server: a resumed handshake skips the key exchange and the signature, most of a full one's
 * cost.  Tickets keep no state on the server; the cache serves clients without them.
 * A stolen ticket key opens every session it sealed (RFC 5077 section 5.5), so mbedTLS makes a
 * new key (AES-256-GCM) once the current one has sealed tickets for TICKET_LIFETIME, checked at
 * each ticket made or read, under the ticket context's lock: no timer, no loop, whichever
 * thread gets there first.  The key before stays for the tickets it made, none older than
 * TICKET_LIFETIME. */
static int resumption(struct tls_conf *t, char *why, size_t cap)
{
    char tmp[128];
    int r = mbedtls_ssl_ticket_setup(&t->ticket, mbedtls_ctr_drbg_random, &t->drbg,
                                     MBEDTLS_CIPHER_AES_256_GCM, TICKET_LIFETIME);
    if (r) {
        snprintf(why, cap, "TLS: session tickets: %s", tls_strerror(r, tmp, sizeof tmp));
        return WSK_ERR_TLS;
    }
    mbedtls_ssl_conf_session_tickets_cb(&t->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &t->ticket);
    mbedtls_ssl_cache_set_max_entries(&t->cache, CACHE_ENTRIES);
    mbedtls_ssl_cache_set_timeout(&t->cache, CACHE_TIMEOUT);
    mbedtls_ssl_conf_session_cache(&t->conf, &t->cache, mbedtls_ssl_cache_get,
                                   mbedtls_ssl_cache_set);
    return 0;
}

int wsk_tls_server_config(wsk_ctx *ctx, const wsk_server_opts *o)
{
    char why[400];
    struct tls_conf *t = conf_new(MBEDTLS_SSL_IS_SERVER, why, sizeof why);
    if (t && (load_own(t, o->tls_cert, o->tls_key, o->tls_key_password, why, sizeof why) < 0 ||
              (o->tls_client_ca && load_ca(t, o->tls_client_ca, NULL, why, sizeof why) < 0))) {
        conf_free(t);
        t = NULL;
    }
    if (t) {
        mbedtls_ssl_conf_authmode(&t->conf, o->tls_client_ca ? MBEDTLS_SSL_VERIFY_REQUIRED
                                                             : MBEDTLS_SSL_VERIFY_NONE);
        if (resumption(t, why, sizeof why) < 0) {
            conf_free(t);
            t = NULL;
        }
    }
    if (!t) {
        wsk_log(ctx->loop, WSK_LOG_ERROR, "%s", why);
        return WSK_ERR_TLS;
    }
    conf_records(t);
    ctx->tls = t;
    return 0;
}

/* The same certificates, byte for byte, in the same order (both lists may be empty). */
static int same_certs(const mbedtls_x509_crt *a, const mbedtls_x509_crt *b)
{
    for (; a && b && a->raw.len == b->raw.len; a = a->next, b = b->next)
        if (a->raw.len && memcmp(a->raw.p, b->raw.p, a->raw.len)) return 0;
    return !a && !b;
}

/* The same chain means the same key (each was checked against the chain's public key); the same
 * client CA means the same client check: the rest of a server's configuration is fixed. */
int wsk_tls_server_share(wsk_ctx *to, wsk_ctx *from)
{
    struct tls_conf *t = to->tls, *f = from->tls;
    if (!t || !f || t == f || to->conns || to->role != WSK_ROLE_SERVER ||
        from->role != WSK_ROLE_SERVER || !same_certs(&t->chain, &f->chain) ||
        !same_certs(&t->ca, &f->ca))
        return 0;
    if (f->rsa) rsa_add_copy(f); /* none: this member's signatures wait for the others' */
    atomic_fetch_add(&f->refs, 1);
    wsk_tls_ctx_free(to);
    to->tls = f;
    return 1;
}

int wsk_tls_client_config(wsk_ctx *ctx, const wsk_client_opts *o, char *why, size_t cap)
{
    struct tls_conf *t = conf_new(MBEDTLS_SSL_IS_CLIENT, why, cap);
    if (!t) return WSK_ERR_TLS;
    int r = 0;
    if (o->tls_insecure) {
        wsk_log(ctx->loop, WSK_LOG_WARN,
                "TLS: not verifying the server certificate (insecure: anyone on the path can "
                "impersonate the server)");
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        r = o->tls_ca ? load_ca(t, o->tls_ca, NULL, why, cap)
                      : load_ca(t, SYSTEM_CA_FILE, SYSTEM_CA_DIR, why, cap);
        mbedtls_ssl_conf_authmode(&t->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    }
    if (!r && o->tls_cert) r = load_own(t, o->tls_cert, o->tls_key, o->tls_key_password, why, cap);
    if (r) {
        conf_free(t);
        return WSK_ERR_TLS;
    }
    conf_records(t);
    ctx->tls = t;
    return 0;
}

/* ----- sessions ------------------------------------------------------------------------------- */

static struct tls_sess *sess_new(struct wsk_ws *c)
{
    struct tls_conf *t = c->ctx->tls;
    wsk_cold *k = wsk_conn_cold(c);
    if (!t || !k) return NULL;
    struct tls_sess *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    mbedtls_ssl_init(&s->ssl);
    if (mbedtls_ssl_setup(&s->ssl, &t->conf)) {
        mbedtls_ssl_free(&s->ssl);
        free(s);
        return NULL;
    }
    s->c = c;
    mbedtls_ssl_set_bio(&s->ssl, s, bio_send, bio_recv, NULL);
    ev_io_init(&s->kick, on_kick, c->io.fd, EV_WRITE);
    s->kick.data = c;
    k->tls = s;
    c->flags |= WSK_F_TLS;
    return s;
}

int wsk_tls_accept(struct wsk_ws *c, const char *peer)
{
    struct tls_sess *s = sess_new(c);
    if (!s) return WSK_ERR_NOMEM;
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    return 0;
}

int wsk_tls_connect(struct wsk_ws *c, const char *host)
{
    struct tls_sess *s = sess_new(c);
    if (!s) return WSK_ERR_NOMEM;
    size_t len = strlen(host);
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') { /* an IPv6 literal from a URL */
        host++;
        len -= 2;
    }
    s->host = strndup(host, len);
    if (!s->host) {
        wsk_tls_release(c);
        return WSK_ERR_NOMEM;
    }
    /* An address gets neither SNI (RFC 6066 section 3 allows only names) nor mbedTLS's name
     * check: verify_ip compares it with the certificate's addresses. */
    if (inet_pton(AF_INET, s->host, s->ip) == 1) {
        s->iplen = 4;
    } else if (inet_pton(AF_INET6, s->host, s->ip) == 1) {
        s->iplen = 16;
    } else if (mbedtls_ssl_set_hostname(&s->ssl, s->host)) {
        wsk_tls_release(c);
        return WSK_ERR_TLS;
    }
    if (s->iplen) mbedtls_ssl_set_verify(&s->ssl, verify_ip, s);
    /* The client speaks first: once the socket is writable (connected), the kick starts the
     * handshake through the read path, whether or not a request is queued yet. */
    ev_io_start(c->ctx->loop->ev, &s->kick);
    return 0;
}

void wsk_tls_version(char out[18])
{
    mbedtls_version_get_string(out); /* at most 9 bytes */
}
