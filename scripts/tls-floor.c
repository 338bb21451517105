/* The floor mbedTLS's primitives set for a TLS 1.2 server on this machine: the CPU time of what a
 * full ECDHE-ECDSA handshake cannot avoid (one ephemeral key pair and one shared secret per
 * curve, one signature by the server's key), and the bulk ciphers per record size.  Built and
 * run by scripts/bench-tls (cc -O2 scripts/tls-floor.c -lmbedcrypto -lIPSec_MB); prints Markdown
 * tables.
 *
 *   tls-floor [SERVER_KEY.pem]      (the ECDSA key wsserve signs with; default: a new P-256 key)
 *
 * Each figure is CPU time of this process (CLOCK_PROCESS_CPUTIME_ID) over a bounded loop: on a
 * loaded machine it is less disturbed than wall time.  The ECDHE rows set up a new context per
 * handshake, as the server does (mbedTLS loads the curve, and for P-256 builds its comb table,
 * every time).  The signature is timed with the key as mbedTLS parses it (an EC key pair, copied
 * into a new ECDSA context, comb table included, at every signature) and as the ECDSA context
 * wsserve keeps (io_tls.c, fast_signer: the table is built once).  The record ciphers are timed
 * in mbedTLS and in Intel's Multi-Buffer Crypto library (ipsec-mb), which seals and opens the
 * records wsserve sends once the handshake is over (io_tls_records.c).  Last, what the random
 * generator costs the threads of wsserve --threads, which share one (see time_draws). */
#include <mbedtls/chachapoly.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdh.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>
#include <mbedtls/version.h>

#include <intel-ipsec-mb.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static mbedtls_ctr_drbg_context drbg;
static mbedtls_entropy_context entropy;

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(int r, const char *what)
{
    if (r) {
        fprintf(stderr, "tls-floor: %s: -0x%04x\n", what, (unsigned)-r);
        exit(1);
    }
}

/* The server's half of one ECDHE exchange on `curve`: a new key pair, the client's public key
 * read, the shared secret computed. */
static void ecdhe_once(mbedtls_ecp_group_id curve, const unsigned char *peer, size_t peer_len)
{
    mbedtls_ecdh_context e;
    unsigned char buf[160], secret[66];
    size_t n;
    mbedtls_ecdh_init(&e);
    check(mbedtls_ecdh_setup(&e, curve), "ecdh_setup");
    check(mbedtls_ecdh_make_params(&e, &n, buf, sizeof buf, mbedtls_ctr_drbg_random, &drbg),
          "ecdh_make_params");
    check(mbedtls_ecdh_read_public(&e, peer, peer_len), "ecdh_read_public");
    check(mbedtls_ecdh_calc_secret(&e, &n, secret, sizeof secret, mbedtls_ctr_drbg_random, &drbg),
          "ecdh_calc_secret");
    mbedtls_ecdh_free(&e);
}

/* A client's public key on `curve` (the ClientKeyExchange content: a length byte, the point). */
static size_t client_public(mbedtls_ecp_group_id curve, unsigned char *out, size_t cap)
{
    mbedtls_ecdh_context e;
    size_t n;
    mbedtls_ecdh_init(&e);
    check(mbedtls_ecdh_setup(&e, curve), "ecdh_setup");
    check(mbedtls_ecdh_make_public(&e, &n, out, cap, mbedtls_ctr_drbg_random, &drbg),
          "ecdh_make_public");
    mbedtls_ecdh_free(&e);
    return n;
}

static double time_ecdhe(mbedtls_ecp_group_id curve, int iters)
{
    unsigned char peer[160];
    size_t n = client_public(curve, peer, sizeof peer);
    ecdhe_once(curve, peer, n);
    double t0 = cpu_now();
    for (int i = 0; i < iters; i++) ecdhe_once(curve, peer, n);
    return (cpu_now() - t0) / iters;
}

/* P-256 ECDHE as it would cost with the curve loaded once, so that the comb table of its base
 * point, built at the first key pair, serves every later one (mbedTLS's TLS layer loads the curve
 * anew for each handshake: this is not reachable through it, and is timed to show what that
 * costs).  The shared secret multiplies the client's point, which no table can serve. */
static double time_ecdhe_kept(mbedtls_ecp_group_id curve, int iters)
{
    mbedtls_ecp_group g;
    mbedtls_ecp_point q, peer;
    mbedtls_mpi d, z, pd;
    mbedtls_ecp_group_init(&g);
    mbedtls_ecp_point_init(&q);
    mbedtls_ecp_point_init(&peer);
    mbedtls_mpi_init(&d);
    mbedtls_mpi_init(&z);
    mbedtls_mpi_init(&pd);
    check(mbedtls_ecp_group_load(&g, curve), "group_load");
    check(mbedtls_ecdh_gen_public(&g, &pd, &peer, mbedtls_ctr_drbg_random, &drbg), "gen_public");
    double t0 = 0;
    for (int i = -1; i < iters; i++) { /* the first round builds the table, untimed */
        if (i == 0) t0 = cpu_now();
        check(mbedtls_ecdh_gen_public(&g, &d, &q, mbedtls_ctr_drbg_random, &drbg), "gen_public");
        check(mbedtls_ecdh_compute_shared(&g, &z, &peer, &d, mbedtls_ctr_drbg_random, &drbg),
              "compute_shared");
    }
    double t = (cpu_now() - t0) / iters;
    mbedtls_mpi_free(&d);
    mbedtls_mpi_free(&z);
    mbedtls_mpi_free(&pd);
    mbedtls_ecp_point_free(&q);
    mbedtls_ecp_point_free(&peer);
    mbedtls_ecp_group_free(&g);
    return t;
}

static double time_sign(mbedtls_pk_context *key, int iters)
{
    unsigned char hash[32] = {1}, sig[MBEDTLS_PK_SIGNATURE_MAX_SIZE];
    size_t n;
    check(
        mbedtls_pk_sign(key, MBEDTLS_MD_SHA256, hash, 32, sig, &n, mbedtls_ctr_drbg_random, &drbg),
        "pk_sign");
    double t0 = cpu_now();
    for (int i = 0; i < iters; i++) {
        hash[0] = (unsigned char)i;
        check(mbedtls_pk_sign(key, MBEDTLS_MD_SHA256, hash, 32, sig, &n, mbedtls_ctr_drbg_random,
                              &drbg),
              "pk_sign");
    }
    return (cpu_now() - t0) / iters;
}

/* Seconds per record of `len` bytes sealed with AES-128-GCM or ChaCha20-Poly1305, over about
 * 64 MiB (and at least 2,000 records). */
static double time_seal(int chacha, size_t len)
{
    static unsigned char in[16384], out[16384];
    unsigned char key[32] = {7}, iv[12] = {0}, aad[13] = {0}, tag[16];
    int iters = (int)((64u << 20) / len);
    if (iters < 2000) iters = 2000;
    mbedtls_gcm_context g;
    mbedtls_chachapoly_context c;
    mbedtls_gcm_init(&g);
    mbedtls_chachapoly_init(&c);
    check(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 128), "gcm_setkey");
    check(mbedtls_chachapoly_setkey(&c, key), "chachapoly_setkey");
    double t0 = cpu_now();
    for (int i = 0; i < iters; i++) {
        iv[11] = (unsigned char)i;
        if (chacha)
            check(mbedtls_chachapoly_encrypt_and_tag(&c, len, iv, aad, sizeof aad, in, out, tag),
                  "chachapoly");
        else
            check(mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, len, iv, sizeof iv, aad,
                                            sizeof aad, in, out, 16, tag),
                  "gcm");
    }
    double t = (cpu_now() - t0) / iters;
    mbedtls_gcm_free(&g);
    mbedtls_chachapoly_free(&c);
    return t;
}

/* The same with ipsec-mb's direct AEAD calls, the ones io_tls_records.c makes: seconds per
 * record sealed (open = 0) or opened and its tag checked (open = 1). */
static double time_imb(IMB_MGR *m, int chacha, int open, size_t len)
{
    static unsigned char in[16384], out[16384];
    unsigned char key[32] = {7}, iv[12] = {0}, aad[13] = {0}, tag[16];
    struct gcm_key_data gk;
    struct gcm_context_data gc;
    struct chacha20_poly1305_context_data cc;
    int iters = (int)((64u << 20) / len);
    if (iters < 2000) iters = 2000;
    IMB_AES128_GCM_PRE(m, key, &gk);
    double t0 = cpu_now();
    for (int i = 0; i < iters; i++) {
        iv[11] = (unsigned char)i;
        if (chacha) {
            IMB_CHACHA20_POLY1305_INIT(m, key, &cc, iv, aad, sizeof aad);
            if (open)
                IMB_CHACHA20_POLY1305_DEC_UPDATE(m, key, &cc, out, in, len);
            else
                IMB_CHACHA20_POLY1305_ENC_UPDATE(m, key, &cc, out, in, len);
            IMB_CHACHA20_POLY1305_ENC_FINALIZE(m, &cc, tag, sizeof tag);
        } else if (open) {
            IMB_AES128_GCM_DEC(m, &gk, &gc, out, in, len, iv, aad, sizeof aad, tag, sizeof tag);
        } else {
            IMB_AES128_GCM_ENC(m, &gk, &gc, out, in, len, iv, aad, sizeof aad, tag, sizeof tag);
        }
    }
    return (cpu_now() - t0) / iters;
}

struct drawer {
    mbedtls_ctr_drbg_context *d;
    int n;
};

static void *draw_loop(void *arg)
{
    struct drawer *w = arg;
    unsigned char b[32];
    for (int i = 0; i < w->n; i++) check(mbedtls_ctr_drbg_random(w->d, b, sizeof b), "drbg");
    return NULL;
}

/* The threads of wsserve --threads share one TLS configuration, so one CTR-DRBG behind its
 * mutex (MBEDTLS_THREADING_C); the other choice is one DRBG per thread.  Here two threads draw
 * 32 bytes at a time at once, from the shared DRBG or from one each, doing nothing else: the
 * worst contention the mutex can meet (a handshake draws a few hundred bytes in about 10 calls
 * among a millisecond of curve arithmetic).  CPU seconds per draw, both threads counted. */
static double time_draws(int shared, int n)
{
    mbedtls_ctr_drbg_context own[2];
    struct drawer w[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        mbedtls_ctr_drbg_init(&own[i]);
        check(mbedtls_ctr_drbg_seed(&own[i], mbedtls_entropy_func, &entropy, NULL, 0), "seed");
        w[i] = (struct drawer){shared ? &drbg : &own[i], n};
    }
    double t0 = cpu_now();
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, draw_loop, &w[i])) check(-1, "pthread_create");
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    double t = (cpu_now() - t0) / (2.0 * n);
    for (int i = 0; i < 2; i++) mbedtls_ctr_drbg_free(&own[i]);
    return t;
}

int main(int argc, char **argv)
{
    mbedtls_pk_context ec, ecdsa, rsa;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&ec);
    mbedtls_pk_init(&rsa);
    mbedtls_pk_init(&ecdsa);
    check(mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0), "drbg_seed");
    if (argc > 1) {
        check(mbedtls_pk_parse_keyfile(&ec, argv[1], NULL), argv[1]);
    } else {
        check(mbedtls_pk_setup(&ec, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)), "pk_setup");
        check(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(ec),
                                  mbedtls_ctr_drbg_random, &drbg),
              "ecp_gen_key");
    }
    check(mbedtls_pk_setup(&ecdsa, mbedtls_pk_info_from_type(MBEDTLS_PK_ECDSA)), "pk_setup");
    check(mbedtls_ecdsa_from_keypair(mbedtls_pk_ec(ecdsa), mbedtls_pk_ec(ec)), "from_keypair");
    check(mbedtls_pk_setup(&rsa, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)), "pk_setup");
    check(mbedtls_rsa_gen_key(mbedtls_pk_rsa(rsa), mbedtls_ctr_drbg_random, &drbg, 2048, 65537),
          "rsa_gen_key");

    double x25519 = time_ecdhe(MBEDTLS_ECP_DP_CURVE25519, 300);
    double p256 = time_ecdhe(MBEDTLS_ECP_DP_SECP256R1, 300);
    double p256_kept = time_ecdhe_kept(MBEDTLS_ECP_DP_SECP256R1, 300);
    double parsed = time_sign(&ec, 300);
    double kept = time_sign(&ecdsa, 300);
    double rsa2048 = time_sign(&rsa, 100);
    printf("| server operation (mbedTLS primitives) | CPU per handshake |\n|---|---|\n");
    printf("| ECDHE X25519 (key pair + shared secret) | %.3f ms |\n", x25519 * 1e3);
    printf("| ECDHE P-256 (key pair + shared secret) | %.3f ms |\n", p256 * 1e3);
    printf("| ECDHE P-256, curve kept across handshakes (comb table cached; not possible in "
           "mbedTLS's TLS layer) | %.3f ms |\n",
           p256_kept * 1e3);
    printf("| ECDSA P-256 signature, key as parsed (comb table rebuilt each time) | %.3f ms |\n",
           parsed * 1e3);
    printf("| ECDSA P-256 signature, ECDSA context kept (comb table cached) | %.3f ms |\n",
           kept * 1e3);
    printf("| RSA-2048 signature (SHA-256) | %.3f ms |\n", rsa2048 * 1e3);
    printf("| **floor: X25519 + ECDSA P-256** | **%.3f ms** |\n", (x25519 + kept) * 1e3);
    IMB_MGR *m = alloc_mb_mgr(0);
    if (!m) check(-1, "alloc_mb_mgr");
    IMB_ARCH arch = IMB_ARCH_NONE;
    init_mb_mgr_auto(m, &arch);
    static const char *arch_names[] = {"none", "no AES-NI", "SSE", "AVX", "AVX2", "AVX512"};
    printf("\nSealing one record (open: the same within 5%%, shown for ipsec-mb), CPU per record; "
           "mbedTLS %s, ipsec-mb %s (%s code path):\n\n",
           MBEDTLS_VERSION_STRING, imb_get_version_str(),
           arch < IMB_ARCH_NUM ? arch_names[arch] : "?");
    printf("| record size | mbedTLS AES-128-GCM | mbedTLS ChaCha20-Poly1305 | ipsec-mb AES-128-GCM "
           "(seal / open) | ipsec-mb ChaCha20-Poly1305 (seal / open) | best mbedTLS / best "
           "ipsec-mb |\n|---|---|---|---|---|---|\n");
    static const size_t sizes[] = {16, 256, 1024, 4096, 16384};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        double z = (double)sizes[i];
        double a = time_seal(0, sizes[i]), c = time_seal(1, sizes[i]);
        double ia = time_imb(m, 0, 0, sizes[i]), iao = time_imb(m, 0, 1, sizes[i]);
        double ic = time_imb(m, 1, 0, sizes[i]), ico = time_imb(m, 1, 1, sizes[i]);
        double bm = a < c ? a : c, bi = ia < ic ? ia : ic;
        printf("| %zu B | %.2f us (%.0f MB/s) | %.2f us (%.0f MB/s) | %.2f / %.2f us (%.0f MB/s) "
               "| %.2f / %.2f us (%.0f MB/s) | %.1f |\n",
               sizes[i], a * 1e6, z / a / 1e6, c * 1e6, z / c / 1e6, ia * 1e6, iao * 1e6,
               z / ia / 1e6, ic * 1e6, ico * 1e6, z / ic / 1e6, bm / bi);
    }
    free_mb_mgr(m);
    double own = time_draws(0, 200000), shared = time_draws(1, 200000);
    printf("\n| 32-byte draw from the CTR-DRBG, 2 threads at once | CPU per draw | per full "
           "handshake (10 draws) |\n|---|---|---|\n");
    printf("| one DRBG per thread | %.2f us | %.1f us |\n", own * 1e6, own * 1e7);
    printf("| one DRBG shared (its mutex), as wsserve --threads | %.2f us | %.1f us |\n",
           shared * 1e6, shared * 1e7);
    mbedtls_pk_free(&ec);
    mbedtls_pk_free(&rsa);
    mbedtls_pk_free(&ecdsa);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return 0;
}
