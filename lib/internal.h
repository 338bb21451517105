/* Internal structures shared by the library's files.  Not installed.
 *
 * The data path, by file (each .h beside its .c says the rest):
 *   io_tcp.c        sockets: listen, accept, read, writev (io_tls.c: the same over mbedTLS;
 *                   io_tls_records.c: its records after the handshake, with ipsec-mb;
 *                   io_transport.h: the calls they share)
 *   conn.c          one connection: read event -> HTTP phase or WebSocket phase; lifecycle
 *   server.c        listeners, accept, the server side of the handshake, plain HTTP replies
 *   client.c        connect, redirects, proxies, the client side of the handshake
 *                   (io_resolve.c: DNS on a thread; url_ref.c: where a redirect points)
 *   http_exchange.c the wsk_request a handler reads and the wsk_response it builds
 *   parse_http.c    HTTP heads and body framing     msg_handshake.c  upgrade rules, accept key
 *   parse_url.c     URLs, percent-decoding          crypto.c         SHA-1 and base64 (mbedTLS)
 *   parse_frame.c   bytes -> frame headers          parse_utf8.c     text validation
 *                                                   (parse_utf8_simd.c: 64-byte chunks of
 *                                                   non-ASCII text with SSSE3 or AVX2)
 *   mask.c          payload (un)masking, a word at a time
 *   msg_assemble.c  frames -> messages -> handlers  msg_control.c    close payloads
 *   pmd_conn.c      permessage-deflate on a socket (pmd.h: pmd_negotiate.c, pmd_isal.c and
 *                   pmd_zlib.c with context takeover, pmd_isal.c and pmd_libdeflate.c whole
 *                   messages without)
 *   send_msg.c      wsk_send/ping/close -> framed bytes on the queue (send_frame.h: headers)
 *   pubsub.c        topics: one framed message queued to every subscriber
 *                   (topic_trie.c: wildcard patterns; ptab.c: its hash tables)
 *   send_queue.c    per-socket queue of byte segments (private or shared blocks)
 *   send_flush.c    one writev per socket per loop iteration, EV_WRITE when the kernel is full
 *   send_lent.c     large replies from the receive buffer (or a socket's message buffer),
 *                   written together at the end of the read
 *                   (a large message with nothing queued: written during the send)
 *   io_loop.c       wsk_loop: receive buffer, the end-of-iteration flush, send-block cache, logging
 *   group.c         server groups: a loop per thread, inboxes between them (group_topics.c:
 *                   the group-wide topic table, publishes carried to the other loops;
 *                   group_stats.c: the members' figures summed; group_accept.c: one member
 *                   accepts and hands sockets round-robin to the others; group_affinity.c: a
 *                   connection goes to the member its upgrade request belongs to)
 * wsbench (cmd/bench_conn.c) drives sockets of this data path itself, through wsk_conn_hooks.
 * Beside it: wskit.h (the public API), buf.c (growable buffers capped at birth), error.c
 * (wsk_strerror), metrics.c (wsk_server_stats and the Prometheus text; metrics.h: the
 * one-line increments the data path makes), version.c (wsk_versions: only the libraries'
 * version calls).
 */
#ifndef WSK_INTERNAL_H
#define WSK_INTERNAL_H

#include "wskit.h"
#include "buf.h"
#include "metrics.h"
#include "parse_frame.h"

#include <ev.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#define WSK_RBUF_SIZE          (512 * 1024) /* receive buffer shared by every socket of a loop */
#define WSK_BLOCK_SIZE         (16 * 1024)  /* default size of a private send block */
#define WSK_BLOCK_CACHED       (WSK_BLOCK_SIZE + 16) /* a cached block: a frame header more */
#define WSK_BLOCK_CACHE        64          /* blocks a loop keeps however idle it is (1 MiB) */
#define WSK_BLOCK_TRIM_MS      1000        /* how long the cache keeps blocks beyond that unused */
#define WSK_IOV_MAX            64          /* segments gathered by one writev */
#define WSK_WRITE_MAX          (1 << 20)   /* bytes one socket may write per loop iteration */
#define WSK_DIRECT_MIN         (16 * 1024) /* payloads from here on skip the shared buffers */
#define WSK_SHARE_MIN          (64 * 1024) /* unsent rests from here on are queued, not copied */
#define WSK_BATCH_MAX          (32 * 1024) /* smaller replies to a read's frames share a write */
#define WSK_COMPRESS_THRESHOLD 64          /* shorter messages go uncompressed (the default) */
/* Messages from here on make the next read guess another of their length (wsk_msg_guess).
 * Smaller ones usually arrive whole in the loop's buffer, with the one behind them, and are
 * handed over where they lie; guessing them into the message buffer only moved them to a colder
 * buffer (A/B echo runs, 2026-12-06: 4-8% more CPU per message at 16 KiB, 1-6% at 64 KiB). */
#define WSK_GUESS_MIN (WSK_RBUF_SIZE / 2)

/* ----- send queue (send_queue.c) ----------------------------------------------------------- */

/* A block of bytes to send.  Private blocks belong to one socket's queue and grow at the tail;
 * shared blocks hold one framed message queued to many sockets and are freed by the last; a
 * socket's message buffer becomes one when the queue takes the unsent rest of a reply lent from
 * it (wsk_msg_block). */
typedef struct wsk_block {
    uint32_t refs;
    uint32_t len; /* bytes filled */
    uint32_t cap;
    uint32_t pad; /* data 16-byte aligned, as malloc's own */
    uint8_t data[];
} wsk_block;

/* One queued run of bytes: blk->data[off, off + len). */
typedef struct wsk_seg {
    struct wsk_seg *next;
    wsk_block *blk;
    uint32_t off, len;
} wsk_seg;

typedef struct wsk_queue {
    wsk_seg *head, *tail;
    size_t bytes;
} wsk_queue;

/* ----- replies lent from the receive buffer (send_lent.c) ---------------------------------- */

#define WSK_LENT_MAX 16 /* frames a read's replies hold before they are written */

/* During the read of a plain server socket (conn.c): its large replies whose payload lies in
 * the loop's receive buffer or in the socket's message buffer (a frame read across reads),
 * written together at the end of the read. */
typedef struct wsk_lent {
    struct wsk_ws *c; /* the socket whose read is being handled, or NULL */
    unsigned n;       /* frames held: headers in hdr, header + payload pairs in iov */
    int from_msg;     /* one of them lies in c's message buffer (c->cold->msg) */
    size_t bytes;
    uint8_t hdr[WSK_LENT_MAX][14]; /* WSK_FRAME_HDR_MAX each */
    struct iovec iov[2 * WSK_LENT_MAX];
} wsk_lent;

/* ----- loop (io_loop.c) ---------------------------------------------------------------------- */

struct wsk_loop {
    struct ev_loop *ev;
    ev_prepare flush_watcher; /* writes every dirty socket once per iteration */
    struct wsk_ws *dirty;     /* sockets with bytes to write or waiting to be freed */
    uint8_t *rbuf;            /* WSK_RBUF_SIZE bytes, shared by every read */
    /* While a data frame's handler runs: its socket, when another frame's bytes follow the
     * frame in this read (msg_assemble.c); send_msg.c then batches the handler's reply. */
    struct wsk_ws *more_input;
    wsk_lent lent; /* replies held until the end of the current read (send_lent.c) */
    /* The send-block cache (wsk_block_new): free blocks of WSK_BLOCK_CACHED bytes, listed
     * through their first 8 bytes; blocks_out of that size are in use, at most blocks_peak at
     * once since blocks_trim_ms; blocks_malloced counts the ones ever allocated. */
    wsk_block *free_blocks;
    unsigned nfree_blocks, blocks_out, blocks_peak;
    uint32_t blocks_trim_ms;
    uint64_t blocks_malloced;
    void *pmd_shared; /* shared compressor state (pmd_conn.c), created on first use */
    int log_level;
    void (*log_fn)(void *arg, int level, const char *msg);
    void *log_arg;
    int client_rng_ready;
    uint8_t client_rng[512]; /* mask keys for client frames, refilled from getrandom(2) */
    unsigned client_rng_pos;
    struct wsk_gloop *group; /* the loop's place in a server group (group.h), or NULL */
};

/* 1 when p[0..len) lies in buf[0..cap) (buf NULL: never). */
static inline int wsk_within(const void *p, size_t len, const void *buf, size_t cap)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)buf;
    return buf && a >= b && a - b <= cap && len <= cap - (a - b);
}

/* The loop's time (ev_now) in milliseconds, modulo 2^32: for differences under 49 days. */
static inline uint32_t wsk_ms(wsk_loop *loop)
{
    return (uint32_t)(uint64_t)(ev_now(loop->ev) * 1e3);
}

/* A monotonic clock in microseconds, modulo 2^32: for differences under 71 minutes (a
 * handshake).  Read at accept and at the 101: the loop's clock moves once per turn, and a
 * handshake on loopback is done well within one millisecond. */
static inline uint32_t wsk_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

void wsk_log(wsk_loop *loop, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Writes every dirty socket and frees the ended ones (what the end of each iteration does). */
void wsk_loop_reap(wsk_loop *loop);
wsk_block *wsk_block_new(wsk_loop *loop, size_t cap);
void wsk_block_unref(wsk_loop *loop, wsk_block *b);

/* ----- a set of sockets sharing handlers and options: a server, or one client --------------- */

/* The limits and policies the shared data path reads (conn.c, msg_assemble.c, send_msg.c,
 * pmd_conn.c, pubsub.c), filled by server.c from wsk_server_opts, by client.c from
 * wsk_client_opts and by a program with hooks (wsbench) itself; each side keeps its other
 * options to itself. */
typedef struct wsk_limits {
    size_t max_payload;        /* largest message received (1009 beyond) */
    size_t max_header;         /* HTTP head cap */
    size_t backpressure_limit; /* bytes queued per socket before sends are refused */
    int close_on_backpressure_limit;
    unsigned idle_timeout; /* seconds; 0 = never */
    int send_pings;        /* ping at half the idle timeout */
    /* Seconds for the HTTP phase, checked by wsk_ctx_sweep; 0 when the owner keeps its own
     * deadline (a client's, to the millisecond, in client.c). */
    unsigned handshake_timeout;
    unsigned close_timeout; /* seconds to wait for the peer's close (>= 1) */
    int compress;           /* wsk_compress_mode of messages sent */
    int decompress;         /* wsk_compress_mode of messages received */
    size_t compress_threshold;
    int compress_level; /* 1..9; 0 (clients): the default */
    size_t guess_min;   /* 0: WSK_GUESS_MIN (a test sets another) */
} wsk_limits;

/* A program that opens and handshakes sockets itself but uses this data path for the rest (the
 * transport, frames in, the send queue and its flush): wsbench.  conn.c calls these instead of
 * server.c or client.c.  Every pointer must be set; c->user is the program's. */
typedef struct wsk_conn_hooks {
    /* The bytes of every read, in any phase; wsk_msg_receive takes those of an open socket. */
    void (*receive)(struct wsk_ws *c, uint8_t *p, size_t n);
    /* Optional (NULL: every read goes to receive whole).  A read of an open socket inside a
     * large frame goes to the rest of that frame in the message buffer (wsk_msg_direct), and
     * the library hands that on itself: direct is called before, receive after with the bytes
     * read behind the frame into the loop's buffer (n may be 0). */
    void (*direct)(struct wsk_ws *c);
    /* Before each write of c (wsk_flush): the program may queue more bytes. */
    void (*fill)(struct wsk_ws *c);
    /* c failed before it opened (TLS handshake, EOF, deadline); wsk_conn_end follows. */
    void (*failed)(struct wsk_ws *c, int err, const char *msg);
    /* c ended (wsk_conn_end): its fd is closed and it is freed at the end of the loop turn. */
    void (*gone)(struct wsk_ws *c);
} wsk_conn_hooks;

typedef struct wsk_ctx {
    wsk_loop *loop;
    wsk_handlers h;
    wsk_limits lim;
    struct wsk_ws *conns; /* every connection, doubly linked */
    size_t nconns;        /* entries in conns */
    size_t nopen;         /* of which completed the handshake and are not closed */
    wsk_server *srv;      /* NULL for a client */
    unsigned role;        /* WSK_ROLE_SERVER or WSK_ROLE_CLIENT */
    void *tls;            /* TLS configuration (io_tls.c), NULL for plain TCP */
    /* A server's topics (pubsub.c), NULL until its first subscription. */
    struct wsk_pubsub *pubsub;
    /* The server's bridge to other nodes (bridge.h), NULL when it has none. */
    struct wsk_bridge *bridge;
    /* A member of a server group: its loop there (group.h); NULL otherwise. */
    struct wsk_gloop *group;
    wsk_stats stats; /* counters (metrics.h); a server's are read by wsk_server_stats */

    /* NULL for a server and a wsk_connect client: see wsk_conn_hooks above. */
    const wsk_conn_hooks *hooks;
} wsk_ctx;

enum { WSK_ROLE_SERVER = 0, WSK_ROLE_CLIENT = 1 };

/* ----- connection (conn.c) ------------------------------------------------------------------- */

enum wsk_conn_state {
    WSK_ST_HTTP = 0, /* server: reading a request head; client: reading the response head */
    WSK_ST_OPEN,     /* WebSocket open */
    WSK_ST_CLOSING,  /* we sent a close frame and wait for the peer's */
    WSK_ST_DONE,     /* close handler ran; writing what is left, then the fd is closed */
    WSK_ST_DEAD,     /* fd closed; freed at the end of the iteration */
};

enum wsk_conn_flag {
    WSK_F_DIRTY = 1 << 0,        /* on the loop's dirty list */
    WSK_F_WANT_WRITE = 1 << 1,   /* the kernel buffer was full: EV_WRITE armed */
    WSK_F_BACKPRESSURE = 1 << 2, /* a send returned -1: call drain when the queue empties */
    WSK_F_CLOSE_SENT = 1 << 3,
    WSK_F_END_AFTER_FLUSH = 1 << 4, /* close the fd once the queue is written */
    WSK_F_PINGED = 1 << 5,          /* an idle ping is outstanding */
    WSK_F_PAYLOAD = 1 << 6,         /* inside a frame's payload (frame fields below are valid) */
    WSK_F_FRAGMENTED = 1 << 7,      /* a fragmented message is being assembled */
    WSK_F_MSG_COMPRESSED = 1 << 8,  /* the message being received is compressed (RSV1) */
    WSK_F_PMD = 1 << 9,             /* permessage-deflate negotiated */
    WSK_F_TLS = 1 << 10,
    WSK_F_KEEPALIVE = 1 << 11, /* plain HTTP: keep the connection after the reply */
    WSK_F_OVERFLOW = 1 << 12,  /* the queue hit its limit once: logged, not again */
    WSK_F_LINGER = 1 << 13,    /* with END_AFTER_FLUSH: shut down writing, drain until EOF */
    WSK_F_PAUSED = 1 << 14,    /* wsk_ws_pause: EV_READ off until wsk_ws_resume or a close;
                                * in a server's HTTP phase: a deferred answer awaited */
    WSK_F_HOLD = 1 << 15,      /* wsk_ws_hold: cold->holds' messages may skip it (pubsub.c) */
};

/* State a connection needs only now and then: during the handshake, while a message is being
 * assembled across reads, with compression or TLS.  Allocated on demand, freed when idle, so an
 * idle plain connection is just struct wsk_ws. */
typedef struct wsk_cold {
    wsk_dbuf head;    /* HTTP head (and body) bytes that arrived in pieces */
    size_t scanned;   /* parser resume point in head */
    size_t body_need; /* plain request: bytes of body still to come */
    wsk_dbuf msg;     /* message being assembled across frames or reads; a large one's bytes
                       * stay for the next message until a sweep finds them unused twice */
    uint8_t msg_idle; /* sweeps since msg's kept bytes were last used */
    uint8_t msg_lent; /* msg's bytes were lent to the send queue: the wsk_block in front of them
                       * (msg.pre) counts the references, this socket's one of them */
    size_t
        msg_guess;    /* length of the last message, when it was one large frame read into msg:
                       * what the next read expects (wsk_msg_guess); 0 once a read proved it wrong */
    uint8_t ctl[125]; /* control frame payload split across reads */
    uint8_t ctl_len;
    char *protocol;         /* negotiated subprotocol, malloc'd */
    void *pmd;              /* permessage-deflate state of this socket (pmd_conn.c) */
    void *tls;              /* TLS session (io_tls.c) */
    void *client;           /* client handshake state (client.c) */
    void *subs;             /* topics this socket subscribed to (pubsub.c) */
    uint64_t pmark;         /* pubsub.c: the last publish that counted this socket in */
    struct wsk_hold *holds; /* pubsub.c: wsk_ws_hold's topics, newest first, nholds of them */
    unsigned nholds;
} wsk_cold;

struct wsk_ws {
    ev_io io; /* fd and the read/write watcher; io.data unused */
    wsk_ctx *ctx;
    struct wsk_ws *prev, *next; /* ctx->conns */
    struct wsk_ws *dirty_next;  /* loop->dirty */
    void *user;
    wsk_cold *cold;
    wsk_queue q;
    uint64_t remaining; /* payload bytes left in the current frame */
    uint32_t stamp;     /* ev_now() seconds of the last activity (or of accept) */
    uint32_t utf8;      /* UTF-8 validator state across a text message */
    uint16_t flags;
    uint8_t state;
    uint8_t frame_op; /* current frame: opcode */
    uint8_t frame_fin;
    uint8_t msg_op; /* opcode of the message being assembled */
    uint8_t mask_off;
    uint8_t mask[4];
    wsk_frame_dec dec;
    uint8_t handed; /* adopted from another member of its group after its upgrade request was
                     * read there (group_affinity.c): not handed on again */
    uint32_t born;  /* wsk_us() at accept or connect: how long the handshake took (metrics) */
};

/* conn.c */
struct wsk_ws *wsk_conn_new(wsk_ctx *ctx, int fd);
/* Closes the fd and releases everything but the struct, which is freed at the end of the loop
 * iteration.  Runs the close handler (code, reason) if the socket was open and it has not run. */
void wsk_conn_end(struct wsk_ws *c, unsigned code, const char *reason);
/* The peer broke the protocol (err) or a limit: logs, runs the error handler, sends close `code`
 * and ends the connection once it is written. */
void wsk_conn_fail(struct wsk_ws *c, int err, unsigned code, const char *msg);
/* The close handler once, then the state DONE: the fd closes after the queue is written. */
void wsk_conn_closed(struct wsk_ws *c, unsigned code, const char *reason, size_t len);
wsk_cold *wsk_conn_cold(struct wsk_ws *c);
/* Keeps p[0..n), an HTTP message not complete yet, in the cold buffer, which may grow to `max`
 * bytes: copies them there unless p is that buffer already.  0, WSK_ERR_NOMEM, or
 * WSK_ERR_TOO_BIG when n is over `max`. */
int wsk_conn_save_head(struct wsk_ws *c, const uint8_t *p, size_t n, size_t max);
/* Frees the cold state when nothing in it is in use. */
void wsk_conn_cold_trim(struct wsk_ws *c);
/* The socket's WebSocket phase began: open handler; then `rest` bytes are frames. */
void wsk_conn_open(struct wsk_ws *c, uint8_t *rest, size_t n);
void wsk_conn_io_events(struct wsk_ws *c, int events);
/* A read or write of c failed with err (< 0, not WSK_ERR_AGAIN), or its handshake deadline
 * passed (WSK_ERR_TIMEOUT); `what` names it for the log.  A socket still in its handshake tells
 * its owner why (the hooks' failed, or wsk_client_failed; a server only logs), then it ends. */
void wsk_conn_failed(struct wsk_ws *c, long err, const char *what);
/* wsk_ws_resume: clears WSK_F_PAUSED and reads again (nothing when not paused). */
void wsk_conn_resume(struct wsk_ws *c);
/* Takes c's fd away from it (a server connection in the HTTP phase with nothing queued, handed
 * to another member of its group: group_affinity.c) and ends c without closing the fd or
 * running a handler: the fd is the caller's. */
int wsk_conn_detach(struct wsk_ws *c);
/* Handles p[0..n) (n <= WSK_RBUF_SIZE, outside the loop's receive buffer) as if c had just read
 * them: copied to the receive buffer, then to c's phase. */
void wsk_conn_feed(struct wsk_ws *c, const uint8_t *p, size_t n);
/* Frees an ended (DEAD) connection; io_loop.c calls it at the end of the iteration. */
void wsk_conn_free(struct wsk_ws *c);
/* Frees a client's ctx once its connection is gone (client.c). */
void wsk_ctx_release(wsk_ctx *ctx);
void wsk_ctx_sweep(wsk_ctx *ctx); /* idle, handshake and closing deadlines */

/* msg_assemble.c: the bytes of an open socket; returns 0, or < 0 when the socket was ended. */
int wsk_msg_receive(struct wsk_ws *c, uint8_t *p, size_t n);
/* Where the next read of c should land when it is inside a large data frame whose buffer is
 * reserved: the rest of that frame's payload, *cap bytes at the returned pointer (in c's cold
 * buffer, valid until the next call into msg_assemble.c); NULL otherwise. */
uint8_t *wsk_msg_direct(struct wsk_ws *c, size_t *cap);
/* n bytes (1..*cap) were read at wsk_msg_direct's pointer, and `after` more into the loop's
 * buffer behind them (wsk_msg_receive's next): 0, or < 0 when c was ended. */
int wsk_msg_direct_received(struct wsk_ws *c, size_t n, size_t after);
/* Between messages, when c's last message was one large frame read into its kept buffer (an
 * echo or a stream of large messages): 1 after filling iov[0..3) for the next read, the header
 * that message had into the loop's buffer, its payload length into c's buffer, and the rest of
 * the loop's buffer (at most WSK_RBUF_SIZE bytes in all); 0 otherwise (plain TCP only). */
int wsk_msg_guess(struct wsk_ws *c, struct iovec iov[3]);
/* n bytes (n > 0) were read into wsk_msg_guess's iov: handled as wsk_msg_receive would, the
 * payload where it landed when the guess was right; 0, or < 0 when c was ended. */
int wsk_msg_guessed(struct wsk_ws *c, const struct iovec iov[3], size_t n);
/* c's message buffer (allocated) as a block the send queue may take references to
 * (wsk_queue_share), for the unsent rest of a reply that lies in it (wsk_flush_iov); NULL when
 * it cannot be one (then the rest is copied).  The buffer is not written again while the queue
 * holds it: the next message gets another. */
wsk_block *wsk_msg_block(struct wsk_ws *c);
/* Frees c's message buffer, or leaves it to the send queue while that still holds it. */
void wsk_msg_buffer_free(wsk_cold *k);

/* send_msg.c */
/* The backpressure rule of every send (wsk_server_opts): 1 when `total` more bytes may join c's
 * queue.  Otherwise 0, after closing c with 1008 (close_on_backpressure_limit) or marking it as
 * dropping sends (logged once until the queue drains).  The close runs handlers. */
static inline int wsk_send_admit(struct wsk_ws *c, size_t total);
/* The refusal half of wsk_send_admit: logs once, or fails the socket (1008). */
int wsk_send_refuse(struct wsk_ws *c);
/* Frames and queues one message or control frame: the frame's bytes when it leaves with this
 * iteration's write, -1 behind backpressure, 0 when dropped (wsk_send maps it to Bun's value). */
long wsk_send_frame(struct wsk_ws *c, unsigned opcode, unsigned rsv, const void *data, size_t len,
                    int force);
/* Sends close `code` + reason (code 0: empty payload) once; state CLOSING unless already past. */
void wsk_send_close(struct wsk_ws *c, unsigned code, const char *reason, size_t len);
/* The argument rule of wsk_close: 0, or WSK_ERR_INVAL for a code or reason that may not be
 * sent. */
int wsk_close_check(unsigned code, const char *reason, size_t len);

/* The argument rule of every message sent (wsk_send, wsk_publish): op is WSK_OP_TEXT or
 * WSK_OP_BINARY and data[0..len) exists and fits one send block, whose lengths are 32-bit. */
static inline int wsk_message_ok(const void *data, size_t len, unsigned op)
{
    return (op == WSK_OP_TEXT || op == WSK_OP_BINARY) && (data || !len) && len <= WSK_MESSAGE_MAX;
}
_Static_assert((uint64_t)WSK_MESSAGE_MAX + sizeof(wsk_block) + 14 <= UINT32_MAX,
               "a frame of WSK_MESSAGE_MAX bytes (header up to 14 bytes) fits one block");

/* send_queue.c */
/* Room for n bytes at the tail of the queue (a private block); commit what was written. */
static inline uint8_t *wsk_queue_reserve(struct wsk_ws *c, size_t n);
static inline void wsk_queue_commit(struct wsk_ws *c, size_t n);
/* The slow half of wsk_queue_reserve: a new private block at the tail. */
uint8_t *wsk_queue_reserve_block(struct wsk_ws *c, size_t n);
/* Appends a copy of p[0..n), over as many private blocks as it takes; 0 or WSK_ERR_NOMEM. */
int wsk_queue_write(struct wsk_ws *c, const void *p, size_t n);
/* The same masked with key on the way (a client's frame; key NULL: a plain copy). */
int wsk_queue_write_masked(struct wsk_ws *c, const void *p, size_t n, const uint8_t key[4]);
/* Appends a reference to shared bytes b->data[off, off + len). */
int wsk_queue_share(struct wsk_ws *c, wsk_block *b, size_t off, size_t len);
/* Fills iov with up to max segments (at most WSK_WRITE_MAX bytes); returns the count. */
int wsk_queue_iov(struct wsk_ws *c, struct iovec *iov, int max);
/* Drops the first n bytes (they were written). */
void wsk_queue_consume(struct wsk_ws *c, size_t n);
void wsk_queue_clear(struct wsk_ws *c);

/* send_flush.c */
/* Writes the queue (one writev), after the hooks' fill; arms EV_WRITE when bytes remain.  0, or
 * < 0 when the socket was ended. */
int wsk_flush(struct wsk_ws *c);
/* Writes the frame hdr[0..hl) + data[0..len) of a socket whose queue is empty, now, with one
 * writev; copies what the kernel did not take to the queue (or, when data lies in c's message
 * buffer, queues a reference to it: wsk_msg_block) and arms EV_WRITE.  The bytes are only read
 * during the call.  Returns hl + len when the kernel took all (or the write failed:
 * the end-of-iteration flush then ends the socket), -1 when part waits in the queue (drain
 * follows), 0 when the socket was ended (no memory for the rest). */
long wsk_flush_direct(struct wsk_ws *c, const uint8_t *hdr, size_t hl, const uint8_t *data,
                      size_t len);
/* The same for the `total` bytes of iov[0..n). */
long wsk_flush_iov(struct wsk_ws *c, const struct iovec *iov, int n, size_t total);

/* send_lent.c */
/* A read of c is about to be handled: its large replies may be held (plain server sockets). */
void wsk_lent_begin(struct wsk_ws *c);
/* Holds the frame of data[0..len) when it lies in the loop's receive buffer or in c's message
 * buffer and c's read is being handled with nothing queued and room within the limits: 1, or 0
 * (nothing done).  data must stay unchanged until the end of the read (msg_assemble.c calls
 * wsk_lent_settle_msg before it writes to the message buffer again). */
int wsk_lent_hold(struct wsk_ws *c, unsigned opcode, unsigned rsv, const void *data, size_t len);
/* Writes the held frames (wsk_flush_iov). */
void wsk_lent_flush(wsk_loop *loop);
/* The read is handled: the held frames are written, nothing more is held. */
void wsk_lent_end(wsk_loop *loop);
/* Before anything else joins c's queue or is written: the frames held for c go first. */
static inline void wsk_lent_settle(struct wsk_ws *c)
{
    if (c->ctx->loop->lent.n && c->ctx->loop->lent.c == c) wsk_lent_flush(c->ctx->loop);
}

/* Before c's message buffer takes new bytes: the frames held from it are written first. */
static inline void wsk_lent_settle_msg(struct wsk_ws *c)
{
    if (c->ctx->loop->lent.from_msg && c->ctx->loop->lent.c == c) wsk_lent_flush(c->ctx->loop);
}

/* server.c */
/* Bytes of a server connection in the HTTP phase. */
void wsk_server_http(struct wsk_ws *c, uint8_t *p, size_t n);
void wsk_server_conn_gone(wsk_server *srv);
/* A connection the server takes on its loop: one it accepted, or one its group's acceptor
 * handed over (group_accept.c); the same limits, TLS handshake and metrics either way.  The
 * server owns fd from the call: 0, or WSK_ERR_STATE (shutting down, at max_connections) or
 * WSK_ERR_NOMEM with fd closed.  peer: the address for TLS's log lines, or NULL. */
int wsk_server_adopt(wsk_server *srv, int fd, const char *peer);
/* A plain connection another member of the group accepted and read p[0..n) from (its upgrade
 * request and whatever followed it), handed over (group_affinity.c): the server takes fd as
 * wsk_server_adopt does (not counted as accepted again) and handles the bytes as if it had
 * read them; born: wsk_us() at the first accept.  0, or < 0 as wsk_server_adopt, fd closed. */
int wsk_server_adopt_request(wsk_server *srv, int fd, const uint8_t *p, size_t n, uint32_t born);
/* The connections, handlers, limits and topics of a server. */
wsk_ctx *wsk_server_ctx(const wsk_server *srv);
/* The options the server was made with (publish_to_self, max_connections, ...). */
const wsk_server_opts *wsk_server_opts_of(const wsk_server *srv);
/* The limits a server context enforces, from its options (defaults for the zero deadlines). */
void wsk_limits_server(wsk_limits *l, const wsk_server_opts *o);

/* client.c */
/* Bytes of a client connection in the HTTP phase (the server's response head). */
void wsk_client_http(struct wsk_ws *c, uint8_t *p, size_t n);
/* The connection failed before it opened: reports err/msg through the error handler. */
void wsk_client_failed(struct wsk_ws *c, int err, const char *msg);

/* io_tcp.c */
int wsk_tcp_listen(const char *host, unsigned port, int reuse_port, int *fds, int max);
/* Accepts a connection: its fd, or -1 with errno in *err.  With peer, the client's address as
 * wsk_addr_string writes it, taken from accept: a client that has already reset the connection
 * has no address for getpeername any more. */
int wsk_tcp_accept(int lfd, int *err, char *peer, size_t cap);
struct sockaddr;
/* Opens a non-blocking TCP socket with TCP_NODELAY, bound to the address `from` when not NULL
 * (the port is left to connect: IP_BIND_ADDRESS_NO_PORT), and starts connecting it to `to`.
 * Returns the fd with *err 0 (connected already) or EINPROGRESS (EV_WRITE tells the outcome,
 * SO_ERROR says which); or -1 with *err = errno and nothing left open. */
int wsk_tcp_connect(const struct sockaddr *to, unsigned to_len, const struct sockaddr *from,
                    unsigned from_len, int *err);
int wsk_tcp_nonblock(int fd);
const char *wsk_addr_string(int fd, char *buf, size_t cap);

/* ----- the per-message fast paths, inline ------------------------------------------------------
 */

/* Adds c to the loop's list of sockets to write (or free) at the end of this iteration. */
static inline void wsk_loop_schedule(wsk_loop *loop, struct wsk_ws *c)
{
    if (c->flags & WSK_F_DIRTY) return;
    c->flags |= WSK_F_DIRTY;
    c->dirty_next = loop->dirty;
    loop->dirty = c;
}

/* 1 when `total` more bytes may be queued on c: the queue is empty (an empty queue takes any one
 * message, so a message over the limit is not lost forever) or stays within the backpressure
 * limit; otherwise 0, after wsk_send_refuse. */
static inline int wsk_send_admit(struct wsk_ws *c, size_t total)
{
    if (!c->q.bytes || c->q.bytes + total <= c->ctx->lim.backpressure_limit) return 1;
    return wsk_send_refuse(c);
}

static inline uint8_t *wsk_queue_reserve(struct wsk_ws *c, size_t n)
{
    wsk_seg *t = c->q.tail;
    if (t && t->blk->refs == 1 && t->off + t->len == t->blk->len && t->blk->cap - t->blk->len >= n)
        return t->blk->data + t->blk->len;
    return wsk_queue_reserve_block(c, n);
}

static inline void wsk_queue_commit(struct wsk_ws *c, size_t n)
{
    wsk_seg *t = c->q.tail;
    t->blk->len += (uint32_t)n;
    t->len += (uint32_t)n;
    c->q.bytes += n;
}

#endif
