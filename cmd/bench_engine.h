/* The wsbench engine: its connections (bench_conn.c), the worker threads that drive them
 * (bench_worker.c), the run as the main thread sees it (bench_run.c), and the hooks of the
 * scenarios (bench_scenario.c).
 *
 * A run has one worker thread per -t, each with its own libev loop, wsk_loop (receive buffer,
 * flush) and share of the connections (connection i belongs to thread i % threads).  The main
 * thread only watches: it starts the measured phase, takes snapshots of the workers' counters
 * each second and ends the run.  Workers and the main thread share nothing but the atomics of
 * wb_state. */
#ifndef WB_BENCH_ENGINE_H
#define WB_BENCH_ENGINE_H

#include "bench.h"

#include <ev.h>

#define WB_HEAD        16    /* first payload bytes of a message handed to the scenario */
#define WB_REQUEST_MAX 8192  /* handshake request */
#define WB_HEAD_MAX    16384 /* response head cap */

struct wsk_ws;
struct wsk_ctx;

enum wb_phase { WB_P_CONNECT = 0, WB_P_RUN, WB_P_STOP };

enum wb_conn_state {
    WB_C_IDLE = 0,   /* not started (or ended and waiting to be restarted) */
    WB_C_CONNECTING, /* TCP connect in progress */
    WB_C_HANDSHAKE,  /* TLS handshake, request sent, reading the response head */
    WB_C_OPEN,
    WB_C_CLOSING, /* our close frame is queued or sent; waiting for the server's */
    WB_C_DRAIN,   /* close frames exchanged; waiting for the server to close TCP */
};

enum wb_conn_flag {
    WB_F_HOOK = 1 << 0,       /* call the scenario's message hook for each message */
    WB_F_CLOSE_SENT = 1 << 1, /* our close frame is queued (or the server's echoed) */
    WB_F_DONE = 1 << 2,       /* reached its -n quota (counted in n_done) */
    WB_F_ENDING = 1 << 3,     /* wsbench itself ends the socket: nothing more to count */
    WB_F_FAILED = 1 << 4,     /* the failure is counted; the close that follows is not */
    WB_F_HEAD = 1 << 5,       /* echo: the first reply is still to be checked against the message */
    WB_F_UNOPENED = 1 << 6,   /* ended before it opened, and counted so: slot_free does not again */
};

typedef struct wb_thread wb_thread;
typedef struct wb_state wb_state;

/* A connection slot.  From the TCP connect to its end it has a library socket (ws), which
 * reads, writes, decodes frames and runs TLS; the slot is what the scenario sees. */
typedef struct wb_conn {
    ev_io io; /* first: the TCP connect in progress (the fd is ws's afterwards) */
    wb_thread *t;
    struct wsk_ws *ws; /* NULL while idle or connecting */
    /* Data stream: whole frames from a prebuilt buffer of ssize bytes, queued from soff with
     * wrap-around (bench_conn.c copies them to ws's send queue when it is written). */
    const uint8_t *sbase;
    uint32_t ssize, soff;
    uint64_t sunsent;
    uint64_t owed; /* frames the scenario wants sent, not yet in the stream */
    uint8_t state, rsv;
    uint16_t flags;
    char key[25];   /* Sec-WebSocket-Key of the handshake */
    uint32_t id;    /* 0 .. connections - 1 */
    uint32_t local; /* index among the thread's open connections (open loop) */
    /* Scenario state. */
    uint64_t sent, recvd; /* data messages */
    uint64_t quota;       /* -n share; 0 = none */
    uint64_t t0;          /* when the connection (or connect cycle) started, ns */
    uint64_t t_drain;     /* when the close frames were exchanged, ns */
    uint64_t *ring;       /* closed loop: send times of the messages in flight */
    uint32_t ring_mask, ring_head, ring_tail;
    uint64_t sched;              /* open loop: messages scheduled so far */
    uint8_t *own;                /* pubsub publisher: frames built as they are sent */
    struct wsk_tls_session *tls; /* --tls-resume: this slot's last TLS session */
} wb_conn;

struct wb_thread {
    wb_state *s;
    unsigned idx;
    pthread_t tid;
    clockid_t cpu_clock;
    struct ev_loop *ev;
    ev_prepare prep; /* the scenario's turn, then the flush */
    ev_async wake;   /* the main thread or another worker has news */
    ev_timer timer;  /* deadlines, every 100 ms */
    ev_io tfd_io;    /* timerfd for the open-loop schedule (ns resolution) */
    int tfd;
    wsk_loop *loop; /* receive buffer, send blocks, the dirty list (bench_conn.c) */
    /* This thread's copies of s->pool and s->zpool (NULL when there is none), which its send
     * queues take references to instead of copying large frames (bench_conn.c). */
    struct wsk_block *pool, *zpool;
    struct wsk_ctx *ctx; /* the sockets: handlers, hooks, limits, TLS configuration */
    char log[200];       /* the library's last log line */
    int verify;          /* --verify, and the scenario echoes */
    wb_conn *conns;
    unsigned nconns;
    unsigned next;             /* next connection to start */
    unsigned connecting, live; /* being set up; with an fd */
    uint64_t now;              /* ns: refreshed after each read and at each turn */
    uint64_t rng;
    int phase_seen;
    int stopping;
    uint64_t stop_deadline;
    uint64_t round_seen;
    uint64_t rx_turn;           /* data messages received since the last turn */
    uint64_t rx_msgs, rx_bytes; /* received, not yet added to st (wb_counts_flush) */
    /* Open loop. */
    wb_conn **open; /* the open connections, in schedule order */
    unsigned nopen;
    uint64_t rate_t0, rate_j;
    double rate_interval; /* ns between two sends of this thread */
    /* Read by the main thread. */
    wb_counters st;
    wb_hist lat, conn;
    uint64_t done; /* 1 once the loop has ended */
    char pad[64];
};

/* What each scenario plugs into the engine.  Every pointer may be NULL. */
typedef struct wb_scen {
    /* Prebuilt frames and anything else shared by the threads; 0 or -1 with why set. */
    int (*setup)(wb_state *s, char *why, size_t cap);
    void (*teardown)(wb_state *s);
    /* The request target of this connection, from the URL's (s->path): "/?name=Alice0",
     * "/wsbench-3" ... */
    void (*path)(wb_state *s, wb_conn *c, char *buf, size_t cap);
    /* The handshake completed. */
    void (*open)(wb_thread *t, wb_conn *c);
    /* A whole data message (inflated when compressed) when WB_F_HOOK is set; head holds its
     * first hlen (<= WB_HEAD) payload bytes.  Returns 0, or -1 when c was ended. */
    int (*message)(wb_thread *t, wb_conn *c, unsigned op, uint64_t len, const uint8_t *head,
                   size_t hlen);
    /* The measured phase began, or (chat) a new round did: called in each worker. */
    void (*start)(wb_thread *t);
    /* Moves c->owed frames into the data stream (called at the flush, into an empty queue). */
    void (*fill)(wb_thread *t, wb_conn *c);
    /* Once per loop turn, before the flush. */
    void (*turn)(wb_thread *t);
    /* The connection ended (after an error, or closed). */
    void (*ended)(wb_thread *t, wb_conn *c);
    /* Nonzero: connections are only opened once the run phase begins (connect). */
    int start_on_run;
    /* Nonzero: the run starts once every connection received its first message (chat). */
    int wait_first_message;
} wb_scen;

extern const wb_scen wb_scen_echo, wb_scen_chat, wb_scen_pubsub, wb_scen_connect, wb_scen_hold,
    wb_scen_listen;

/* Where connections go: one URL's parts and address. */
typedef struct wb_dest {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[256];
    unsigned port;
    int secure;
    char path[1024];
    char userinfo[256];
    int has_userinfo;
} wb_dest;

/* The destination of connection c: the URLs take the connections in turn. */
#define WB_DEST(s, c) (&(s)->dst[(c)->id % (s)->ndst])

struct wb_state {
    const wb_opts *o;
    const wb_scen *sc;
    volatile int *stop;
    wb_dest dst[WB_MAX_SPREAD]; /* the run's URLs (wb_opts.spread, or the one URL) */
    unsigned ndst;
    int secure;      /* one of them is wss:// */
    unsigned nsrc;   /* source addresses 127.0.0.1 .. 127.0.0.nsrc (0: any) */
    char offer[128]; /* Sec-WebSocket-Extensions offer ("" for none) */
    /* Prebuilt frames (scenario data). */
    uint8_t *pool; /* echo: pool_frames masked frames of frame_size bytes */
    uint32_t pool_size, frame_size, pool_frames;
    uint8_t *zpool; /* the same frames compressed (RSV1), for --compress */
    uint32_t zpool_size, zframe_size;
    uint8_t *payload; /* the unmasked payload every echo message carries */
    size_t payload_len;
    uint8_t *batch[8]; /* chat: the batch, with 8 sets of masking keys */
    uint32_t batch_len, batch_msgs;
    uint64_t per_round;  /* chat: messages received by all clients in a round */
    uint64_t max_rounds; /* chat: from -n; 0 = no limit */
    unsigned publishers; /* pubsub: connections 0 .. publishers - 1 publish */
    /* Coordination (atomics). */
    int phase;
    unsigned total;      /* connections */
    unsigned n_settled;  /* connection attempts finished (open or failed) */
    unsigned n_open;     /* ever opened */
    unsigned n_ready;    /* chat: had their first message */
    unsigned n_done;     /* reached their -n quota */
    unsigned n_ended;    /* open connections that ended during the run */
    unsigned n_pub_open; /* pubsub: publishers open */
    unsigned threads_done;
    int64_t chat_remaining;
    uint64_t chat_round; /* rounds started */
    int round_done;      /* --round-delay: a round finished, the next waits for a tick */
    uint64_t round_t0;   /* ns when the current round started */
    uint64_t t_run;      /* ns when the run phase began */
    int first_err_set;
    char first_err[200];
    /* Main thread. */
    struct ev_loop *main_ev;
    ev_async main_wake;
    wb_thread *threads;
    unsigned nthreads;
};

uint64_t wb_now(void);
/* Random 64-bit values from the thread's generator (seeded from getrandom(2)). */
uint64_t wb_rand(uint64_t *state);
/* Fills p with random bytes from getrandom(2). */
void wb_random_bytes(void *p, size_t n);
/* Fills p with `wsbench echo`'s text: JSON-like records, the same bytes on every run (see
 * bench_scenario.c). */
void wb_json_like(uint8_t *p, size_t len);

/* Adds what the current read received to the counters the main thread reads: before anything
 * that makes the main thread take its final snapshot (wb_wake_main after a quota). */
void wb_counts_flush(wb_thread *t);
/* Queues c for the end-of-turn write (its stream and what it owes). */
void wb_conn_dirty(wb_thread *t, wb_conn *c);
/* Records an error of kind e; the first message of a run is kept for the report. */
void wb_error(wb_thread *t, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Fails c: records the error and closes it at once (returns -1 for the caller to pass on). */
int wb_conn_fail(wb_thread *t, wb_conn *c, int e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Starts the closing handshake (code 1000) after what the stream still holds. */
void wb_conn_close(wb_thread *t, wb_conn *c);
/* Opens (or reopens) connection c. */
void wb_conn_start(wb_thread *t, wb_conn *c);
/* Ends c at once, without counting an error. */
void wb_conn_end(wb_thread *t, wb_conn *c);
/* Starts queued connections while fewer than --connect-concurrency are being set up. */
void wb_conns_start(wb_thread *t);
/* The thread's wsk_loop and wsk_ctx (and TLS configuration): 0, or -1 with why set. */
int wb_thread_conns_init(wb_thread *t, char *why, size_t cap);
/* Ends what is left of the thread's sockets and frees its loop and ctx. */
void wb_thread_conns_free(wb_thread *t);
/* The Sec-WebSocket-Extensions offer of --compress into out; its length. */
int wb_pmd_offer(char *out, size_t cap);
/* bench_worker.c: the threads' state and loops (0, or -1 with why set, and wb_threads_free
 * frees what was made); a thread's body; what the threads leave when they are joined, freed. */
int wb_threads_init(wb_state *s, unsigned nthreads, char *why, size_t cap);
void *wb_worker_main(void *arg);
void wb_threads_free(wb_state *s);
/* Wakes the main thread (thread-safe). */
void wb_wake_main(wb_state *s);
/* Wakes every worker but t (thread-safe). */
void wb_wake_workers(wb_state *s, wb_thread *except);
/* Arms the thread's timerfd for the absolute time ns (CLOCK_MONOTONIC). */
void wb_wake_at(wb_thread *t, uint64_t ns);
/* Builds one masked client frame into out (header + payload); returns its length. */
size_t wb_frame_build(uint8_t *out, unsigned op, unsigned rsv, const uint8_t *payload, size_t len,
                      const uint8_t key[4]);

static inline unsigned wb_atomic_inc(unsigned *p)
{
    return __atomic_add_fetch(p, 1, __ATOMIC_ACQ_REL);
}
static inline unsigned wb_atomic_get(const unsigned *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline int wb_phase(const wb_state *s)
{
    return __atomic_load_n(&s->phase, __ATOMIC_ACQUIRE);
}

#endif
