/* wsbench scenarios: what each sends and what each received message means.  See
 * bench_engine.h for the hooks and PROTOCOL.md (scripts/bench) for the chat benchmark. */
#include "bench_engine.h"

#include "internal.h"
#include "mask.h"
#include "pmd.h"
#include "send_frame.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int phase_is_run(const wb_state *s)
{
    return __atomic_load_n(&s->phase, __ATOMIC_ACQUIRE) == WB_P_RUN;
}

static void conn_done(wb_thread *t, wb_conn *c)
{
    if (c->flags & WB_F_DONE) return;
    c->flags |= WB_F_DONE;
    wb_counts_flush(t);
    wb_atomic_inc(&t->s->n_done);
    wb_wake_main(t->s);
}

/* This connection's share of -n. */
static uint64_t quota_of(const wb_state *s, const wb_conn *c)
{
    uint64_t n = s->o->count;
    if (!n) return 0;
    return n / s->total + (c->id < n % s->total);
}

/* ----- prebuilt frames ------------------------------------------------------------------------ */

/* Frames in a pool: enough distinct masking keys that consecutive messages never share one,
 * bounded to 4 MiB so large messages do not take the machine's memory. */
static uint32_t pool_frames(size_t frame)
{
    size_t n = (4u << 20) / frame;
    if (n > 4096) n = 4096;
    if (n < 4) n = 4;
    return (uint32_t)n;
}

static uint8_t *build_pool(const uint8_t *payload, size_t len, unsigned op, unsigned rsv,
                           uint32_t *frames, uint32_t *frame_size)
{
    size_t fs = wsk_frame_header_size(len, 1) + len;
    uint32_t n = pool_frames(fs);
    uint8_t *pool = malloc(fs * n);
    if (!pool) return NULL;
    uint8_t *keys = malloc(4u * n);
    if (!keys) {
        free(pool);
        return NULL;
    }
    wb_random_bytes(keys, 4u * n);
    for (uint32_t i = 0; i < n; i++)
        wb_frame_build(pool + i * fs, op, rsv, payload, len, keys + 4 * i);
    free(keys);
    *frames = n;
    *frame_size = (uint32_t)fs;
    return pool;
}

/* The connection sends from the echo pool (its thread's copy), compressed when it negotiated
 * compression and there is a compressed pool; returns the size of one frame of that pool. */
static uint32_t use_pool(const wb_thread *t, wb_conn *c)
{
    const wb_state *s = t->s;
    int z = c->rsv != 0 && s->zpool;
    c->sbase = z ? t->zpool->data : t->pool->data;
    c->ssize = z ? s->zpool_size : s->pool_size;
    return z ? s->zframe_size : s->frame_size;
}

/* t->open: this thread's open connections with an id below `below`, in order. */
static void list_open(wb_thread *t, unsigned below)
{
    t->nopen = 0;
    for (unsigned i = 0; i < t->nconns; i++) {
        wb_conn *c = &t->conns[i];
        if (c->state != WB_C_OPEN || c->id >= below) continue;
        c->local = t->nopen;
        t->open[t->nopen++] = c;
    }
}

/* Open loop from now: this thread sends its share of --rate, t->nopen of the `total` sending
 * connections, over its connections in turn (see echo_turn). */
static void rate_start(wb_thread *t, unsigned total)
{
    t->rate_interval = 1e9 / (t->s->o->rate * t->nopen / (total ? total : 1));
    t->rate_t0 = t->now;
    t->rate_j = 0;
}

/* ----- echo ----------------------------------------------------------------------------------- */

/* Text like an application's JSON messages: records with the same keys and varying values, in
 * printable ASCII (valid UTF-8 at any length, cut anywhere), so compression finds what it finds
 * in real traffic: repeated keys, digits that vary.  The same bytes on every run. */
void wb_json_like(uint8_t *p, size_t len)
{
    static const char *const names[] = {"alice", "bob", "carol", "dave", "erin", "frank"};
    uint32_t x = 2463534242u;
    char rec[128];
    size_t at = 0;
    for (unsigned id = 1; at < len; id++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        int n = snprintf(rec, sizeof rec,
                         "{\"id\":%u,\"user\":\"%s\",\"score\":%u.%02u,\"online\":%s,"
                         "\"tags\":[\"t%u\",\"t%u\"]},",
                         id, names[x % 6], x % 1000, (x >> 10) % 100, x & 1024 ? "true" : "false",
                         (x >> 12) % 50, (x >> 18) % 50);
        size_t k = (size_t)n < len - at ? (size_t)n : len - at;
        memcpy(p + at, rec, k);
        at += k;
    }
}

/* Text in several scripts for --utf8: words of 1- to 4-byte characters, about a third of the
 * bytes non-ASCII (what the UTF-8 validator's vector path meets), ending on a whole character
 * (ASCII fills what no word fits).  The same bytes on every run. */
static void utf8_like(uint8_t *p, size_t len)
{
    static const char *const words[] = {"hello ",
                                        "na\xc3\xafve ",
                                        "\xe2\x82\xac"
                                        "5 ",
                                        "data ",
                                        "\xd0\x9f\xd1\x80\xd0\xb8 ",
                                        "message ",
                                        "\xe6\x97\xa5\xe6\x9c\xac ",
                                        "\xf0\x9f\x98\x80 ",
                                        "value, ",
                                        "\xc3\xbc"
                                        "ber "};
    uint32_t x = 2463534242u;
    size_t at = 0;
    while (at < len) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        const char *w = words[x % 10];
        size_t k = strlen(w);
        if (k > len - at) {
            memset(p + at, 'x', len - at);
            break;
        }
        memcpy(p + at, w, k);
        at += k;
    }
}

static int echo_setup(wb_state *s, char *why, size_t cap)
{
    const wb_opts *o = s->o;
    size_t len = o->size;
    s->payload = malloc(len ? len : 1);
    if (!s->payload) goto nomem;
    s->payload_len = len;
    if (o->binary) {
        wb_random_bytes(s->payload, len);
    } else if (o->utf8) {
        utf8_like(s->payload, len);
    } else {
        wb_json_like(s->payload, len);
    }
    unsigned op = o->binary ? WSK_OP_BINARY : WSK_OP_TEXT;
    s->pool = build_pool(s->payload, len, op, 0, &s->pool_frames, &s->frame_size);
    if (!s->pool) goto nomem;
    s->pool_size = s->pool_frames * s->frame_size;
    if (*s->offer) {
        /* Every message is compressed on its own (client_no_context_takeover is in the
         * offer), so one compressed payload serves every frame. */
        wsk_pmd_deflater *d = wsk_pmd_deflater_new(15, 8, WSK_PMD_LEVEL_DEFAULT);
        wsk_dbuf z;
        wsk_dbuf_init(&z, len + 1024);
        if (!d || wsk_pmd_deflate(d, s->payload, len, 1, &z) < 0) {
            if (d) wsk_pmd_deflater_free(d);
            wsk_dbuf_free(&z);
            snprintf(why, cap, "cannot compress the message");
            return -1;
        }
        wsk_pmd_deflater_free(d);
        uint32_t n;
        s->zpool = build_pool(z.p, z.len, op, WSK_RSV1, &n, &s->zframe_size);
        wsk_dbuf_free(&z);
        if (!s->zpool) goto nomem;
        s->zpool_size = n * s->zframe_size;
    }
    return 0;
nomem:
    snprintf(why, cap, "out of memory for the message pool");
    return -1;
}

static void echo_teardown(wb_state *s)
{
    free(s->pool);
    free(s->zpool);
    free(s->payload);
}

/* The first messages of a connection: the window (closed loop) or its place in the schedule
 * (open loop). */
static void echo_begin(wb_thread *t, wb_conn *c)
{
    const wb_state *s = t->s;
    if (c->state != WB_C_OPEN || (c->flags & WB_F_DONE)) return;
    if (s->o->rate > 0) return; /* the turn hook schedules */
    uint64_t w = s->o->window ? s->o->window : 1;
    if (c->quota && w > c->quota) w = c->quota;
    c->owed = w;
    wb_conn_dirty(t, c);
}

static void echo_open(wb_thread *t, wb_conn *c)
{
    const wb_state *s = t->s;
    /* The first reply's head is checked against the message (echo_first), then no more. */
    c->flags |= WB_F_HOOK | WB_F_HEAD;
    uint32_t fs = use_pool(t, c);
    /* Connections start at different places in the pool: their keys differ too. */
    c->soff = (uint32_t)((c->id * 2654435761u) % (c->ssize / fs)) * fs;
    c->quota = quota_of(s, c);
    if (s->o->rate <= 0 && !c->ring) {
        uint32_t n = 1;
        while (n < (s->o->window ? s->o->window : 1)) n <<= 1;
        c->ring = malloc(n * sizeof *c->ring);
        if (!c->ring) {
            wb_conn_fail(t, c, WB_E_CONNECT, "out of memory");
            return;
        }
        c->ring_mask = n - 1;
    }
    c->ring_head = c->ring_tail = 0;
    c->sent = c->recvd = c->sched = 0;
    if (phase_is_run(s)) echo_begin(t, c);
}

static void echo_start(wb_thread *t)
{
    const wb_state *s = t->s;
    list_open(t, UINT_MAX);
    for (unsigned i = 0; i < t->nopen; i++) echo_begin(t, t->open[i]);
    /* The intended send time of every message is known in advance (see echo_turn). */
    if (s->o->rate > 0 && t->nopen) rate_start(t, wb_atomic_get(&s->n_open));
}

static void echo_fill(wb_thread *t, wb_conn *c)
{
    const wb_state *s = t->s;
    uint32_t fs = t->zpool && c->sbase == t->zpool->data ? s->zframe_size : s->frame_size;
    uint64_t room = (c->ssize - c->sunsent) / fs;
    uint64_t k = c->owed < room ? c->owed : room;
    if (c->quota) {
        uint64_t left = c->quota > c->sent ? c->quota - c->sent : 0;
        if (k > left) k = left;
        if (!left) c->owed = 0; /* -n reached: nothing more is owed */
    }
    if (!k) return; /* the stream is full: what is owed waits for the next flush */
    if (c->ring)
        for (uint64_t i = 0; i < k; i++) c->ring[c->ring_head++ & c->ring_mask] = t->now;
    c->sunsent += k * fs;
    c->owed -= k;
    c->sent += k;
    wb_add(&t->st.msgs_tx, k);
    wb_add(&t->st.bytes_tx, k * s->payload_len);
}

/* Open loop: message j of this thread is due at rate_t0 + j * interval and goes to connection
 * j % nopen.  Latency counts from that intended time, so a server that stalls is charged for
 * every message it kept waiting, not only for the few that were sent (coordinated omission). */
static void echo_turn(wb_thread *t)
{
    const wb_state *s = t->s;
    if (s->o->rate <= 0 || !t->nopen || t->stopping || t->phase_seen != WB_P_RUN) return;
    uint64_t j1 = (uint64_t)((double)(t->now - t->rate_t0) / t->rate_interval) + 1;
    if (j1 > t->rate_j) {
        if (j1 - t->rate_j <= t->nopen) {
            for (uint64_t j = t->rate_j; j < j1; j++) {
                wb_conn *c = t->open[j % t->nopen];
                c->sched++;
                if (c->state == WB_C_OPEN && !(c->flags & WB_F_CLOSE_SENT)) {
                    c->owed++;
                    wb_conn_dirty(t, c);
                }
            }
        } else {
            for (unsigned k = 0; k < t->nopen; k++) {
                wb_conn *c = t->open[k];
                uint64_t due = j1 > k ? (j1 - k - 1) / t->nopen + 1 : 0;
                if (due > c->sched && c->state == WB_C_OPEN && !(c->flags & WB_F_CLOSE_SENT)) {
                    c->owed += due - c->sched;
                    wb_conn_dirty(t, c);
                }
                c->sched = due;
            }
        }
        t->rate_j = j1;
    }
    wb_wake_at(t, t->rate_t0 + (uint64_t)((double)j1 * t->rate_interval));
}

/* A reply: timed against its message's send time, and replaced by a new message. */
static inline int echo_reply(wb_thread *t, wb_conn *c, unsigned op, uint64_t len)
{
    const wb_state *s = t->s;
    if (len != s->payload_len || op != (s->o->binary ? WSK_OP_BINARY : WSK_OP_TEXT))
        return wb_conn_fail(t, c, WB_E_MISMATCH, "reply of %llu bytes (%s), sent %zu bytes (%s)",
                            (unsigned long long)len, op == WSK_OP_TEXT ? "text" : "binary",
                            s->payload_len, s->o->binary ? "binary" : "text");
    uint64_t sent_at;
    if (c->ring) {
        if (c->ring_tail == c->ring_head)
            return wb_conn_fail(t, c, WB_E_MISMATCH, "a reply to no message");
        sent_at = c->ring[c->ring_tail++ & c->ring_mask];
    } else {
        sent_at =
            t->rate_t0 + (uint64_t)((double)(c->local + c->recvd * t->nopen) * t->rate_interval);
    }
    wb_hist_record(&t->lat, t->now > sent_at ? t->now - sent_at : 0);
    c->recvd++;
    if (c->quota && c->recvd >= c->quota) {
        conn_done(t, c);
        return 0;
    }
    if (c->ring && !t->stopping && t->phase_seen == WB_P_RUN) {
        c->owed++;
        wb_conn_dirty(t, c);
    }
    return 0;
}

/* The first reply of a connection: a server that answers something else than the message (a
 * greeting, a broker's JSON, an error) is not an echo server, and the run says so in those
 * words (wb_verdict completes "does not echo" with the URL).  Out of line, reached by a tail
 * call: echo_message, the hot path, keeps its small frame. */
__attribute__((cold, noinline)) static int
echo_first(wb_thread *t, wb_conn *c, unsigned op, uint64_t len, const uint8_t *head, size_t hlen)
{
    const wb_state *s = t->s;
    c->flags &= ~WB_F_HEAD;
    unsigned want = s->o->binary ? WSK_OP_BINARY : WSK_OP_TEXT;
    size_t n = hlen < s->payload_len ? hlen : s->payload_len;
    if (len == s->payload_len && op == want && !memcmp(head, s->payload, n))
        return echo_reply(t, c, op, len);
    char shown[4 * WB_HEAD + 1];
    size_t k = 0;
    for (size_t i = 0; i < hlen; i++)
        k += (size_t)snprintf(shown + k, sizeof shown - k,
                              head[i] >= 0x20 && head[i] < 0x7f ? "%c" : "\\x%02x", head[i]);
    return wb_conn_fail(t, c, WB_E_MISMATCH,
                        "does not echo: first reply was %s \"%s\"%s (%llu bytes), sent %zu bytes",
                        op == WSK_OP_TEXT ? "text" : "binary", shown, len > hlen ? "..." : "",
                        (unsigned long long)len, s->payload_len);
}

static int echo_message(wb_thread *t, wb_conn *c, unsigned op, uint64_t len, const uint8_t *head,
                        size_t hlen)
{
    if (__builtin_expect(c->flags & WB_F_HEAD, 0)) return echo_first(t, c, op, len, head, hlen);
    return echo_reply(t, c, op, len);
}

const wb_scen wb_scen_echo = {
    .setup = echo_setup,
    .teardown = echo_teardown,
    .open = echo_open,
    .message = echo_message,
    .start = echo_start,
    .fill = echo_fill,
    .turn = echo_turn,
};

/* ----- chat (Bun's bench/websocket-server) -------------------------------------------------- */

#define CHAT_REPEAT  32 /* times the 50-message cycle is repeated in a batch */
#define CHAT_KEYSETS 8  /* batches with different masking keys, used in turn */

static const char *const chat_base[26] = {
    "Alice", "Bob",   "Charlie", "David",  "Eve",   "Frank",  "Grace",  "Heidi",   "Ivan",
    "Judy",  "Karl",  "Linda",   "Mike",   "Nancy", "Oscar",  "Peggy",  "Quentin", "Ruth",
    "Steve", "Trudy", "Ursula",  "Victor", "Wendy", "Xavier", "Yvonne", "Zach",
};

/* The cycle of 50 messages of Bun's chat-client.mjs (PROTOCOL.md). */
static unsigned chat_cycle(const char *out[50], char hello[10][16])
{
    static const char *const words[10] = {
        "What is the meaning of life?",
        "where is the bathroom?",
        "zoo",
        "kangaroo",
        "erlang",
        "elixir",
        "bun",
        "mochi",
        "typescript",
        "javascript",
    };
    unsigned n = 0;
    for (int k = 0; k < 10; k++) {
        if (k == 0)
            snprintf(hello[k], 16, "Hello World!");
        else
            snprintf(hello[k], 16, "Hello World! %d", k);
        out[n++] = hello[k];
    }
    const char *tail[3] = {hello[7], hello[8], hello[9]};
    for (int k = 0; k < 10; k++) out[n++] = words[k];
    for (int k = 0; k < 3; k++) out[n++] = tail[k];
    for (int k = 0; k < 10; k++) out[n++] = words[k];
    for (int k = 0; k < 3; k++) out[n++] = tail[k];
    out[n++] = words[0];
    for (int k = 0; k < 3; k++) out[n++] = tail[k];
    for (int k = 0; k < 10; k++) out[n++] = words[k];
    return n;
}

static int chat_setup(wb_state *s, char *why, size_t cap)
{
    const char *cycle[50];
    char hello[10][16];
    if (chat_cycle(cycle, hello) != 50) {
        snprintf(why, cap, "internal error: the chat cycle must have 50 messages");
        return -1;
    }
    size_t len = 0;
    for (int r = 0; r < CHAT_REPEAT; r++)
        for (int i = 0; i < 50; i++)
            len += wsk_frame_header_size(strlen(cycle[i]), 1) + strlen(cycle[i]);
    uint8_t *keys = malloc(4u * 50 * CHAT_REPEAT);
    if (!keys) goto nomem;
    for (int b = 0; b < CHAT_KEYSETS; b++) {
        s->batch[b] = malloc(len);
        if (!s->batch[b]) {
            free(keys);
            goto nomem;
        }
        wb_random_bytes(keys, 4u * 50 * CHAT_REPEAT);
        size_t off = 0;
        for (int r = 0, m = 0; r < CHAT_REPEAT; r++)
            for (int i = 0; i < 50; i++, m++)
                off += wb_frame_build(s->batch[b] + off, WSK_OP_TEXT, 0, (const uint8_t *)cycle[i],
                                      strlen(cycle[i]), keys + 4 * m);
    }
    free(keys);
    s->batch_len = (uint32_t)len;
    s->batch_msgs = 50 * CHAT_REPEAT;
    /* Each client receives the batch of every member of its room, itself included. */
    unsigned rooms = s->o->rooms ? s->o->rooms : 1;
    s->per_round = 0;
    for (unsigned k = 0; k < rooms; k++) {
        uint64_t n = s->total / rooms + (k < s->total % rooms);
        s->per_round += n * n * s->batch_msgs;
    }
    if (s->o->count) s->max_rounds = (s->o->count + s->per_round - 1) / s->per_round;
    return 0;
nomem:
    snprintf(why, cap, "out of memory");
    return -1;
}

static void chat_teardown(wb_state *s)
{
    for (int b = 0; b < CHAT_KEYSETS; b++) free(s->batch[b]);
}

/* Client k is BASE[k % 26] followed by floor(k / 26): Alice0 ... Zach0, Alice1 ...  Bun's
 * client appends "?name=NAME" to the URL as it is; a URL that has a query gets "&name=".
 * With --rooms N, "&room=" k % N follows. */
static void chat_path(wb_state *s, wb_conn *c, char *buf, size_t cap)
{
    const char *path = WB_DEST(s, c)->path;
    int n = snprintf(buf, cap, "%s%cname=%s%u", path, strchr(path, '?') ? '&' : '?',
                     chat_base[c->id % 26], c->id / 26);
    if (s->o->rooms > 1 && n >= 0 && (size_t)n < cap)
        snprintf(buf + n, cap - (size_t)n, "&room=%u", c->id % s->o->rooms);
}

static void chat_open(wb_thread *t, wb_conn *c)
{
    (void)t;
    c->flags |= WB_F_HOOK; /* until the first message */
    c->recvd = 0;
}

/* The first message of each client ("ready" from the server) marks it ready. */
static int chat_message(wb_thread *t, wb_conn *c, unsigned op, uint64_t len, const uint8_t *head,
                        size_t hlen)
{
    wb_state *s = t->s;
    (void)op;
    (void)len;
    (void)head;
    (void)hlen;
    c->flags &= ~WB_F_HOOK;
    /* This message must be in the counters before the main thread can see every client
     * ready and take the snapshot the run is measured from. */
    wb_counts_flush(t);
    if (c->recvd++ == 0 && wb_atomic_inc(&s->n_ready) == s->total) wb_wake_main(s);
    return 0;
}

/* A round: every client of this thread sends the whole batch. */
static void chat_start(wb_thread *t)
{
    wb_state *s = t->s;
    uint64_t round = t->round_seen;
    uint64_t n = 0;
    for (unsigned i = 0; i < t->nconns; i++) {
        wb_conn *c = &t->conns[i];
        if (c->state != WB_C_OPEN) continue;
        c->sbase = s->batch[(c->id + round) % CHAT_KEYSETS];
        c->ssize = s->batch_len;
        c->soff = 0;
        c->sunsent = s->batch_len;
        n++;
        wb_conn_dirty(t, c);
    }
    wb_add(&t->st.msgs_tx, n * s->batch_msgs);
    wb_add(&t->st.bytes_tx, n * 595 * CHAT_REPEAT);
}

/* Once per turn: what this thread received counts against the round.  The thread whose count
 * finishes the round starts the next one (at once; or, with --round-delay, the main thread's
 * poller does, like Bun's client). */
static void chat_turn(wb_thread *t)
{
    wb_state *s = t->s;
    if (!t->rx_turn) return;
    if (t->phase_seen != WB_P_RUN || t->stopping) {
        t->rx_turn = 0;
        return;
    }
    int64_t k = (int64_t)t->rx_turn;
    t->rx_turn = 0;
    int64_t left = __atomic_sub_fetch(&s->chat_remaining, k, __ATOMIC_ACQ_REL);
    if (left > 0 || left + k <= 0) return;
    uint64_t t0 = __atomic_load_n(&s->round_t0, __ATOMIC_ACQUIRE);
    wb_hist_record(&t->lat, t->now - t0);
    wb_add(&t->st.rounds, 1);
    uint64_t round = __atomic_load_n(&s->chat_round, __ATOMIC_ACQUIRE);
    if (s->max_rounds && round >= s->max_rounds) {
        __atomic_store_n(&s->n_done, s->total, __ATOMIC_RELEASE);
        wb_wake_main(s);
        return;
    }
    if (s->o->round_delay_ms) {
        __atomic_store_n(&s->round_done, 1, __ATOMIC_RELEASE);
        return;
    }
    /* Nothing of the next round can have arrived yet, so adding keeps any overshoot. */
    __atomic_add_fetch(&s->chat_remaining, (int64_t)s->per_round, __ATOMIC_ACQ_REL);
    __atomic_store_n(&s->round_t0, t->now, __ATOMIC_RELEASE);
    t->round_seen = __atomic_add_fetch(&s->chat_round, 1, __ATOMIC_ACQ_REL);
    wb_wake_workers(s, t);
    chat_start(t);
}

const wb_scen wb_scen_chat = {
    .setup = chat_setup,
    .teardown = chat_teardown,
    .path = chat_path,
    .open = chat_open,
    .message = chat_message,
    .start = chat_start,
    .turn = chat_turn,
    .wait_first_message = 1,
};

/* ----- connect: handshake, one message, close, again ---------------------------------------- */

static int connect_setup(wb_state *s, char *why, size_t cap)
{
    return echo_setup(s, why, cap);
}

static void connect_open(wb_thread *t, wb_conn *c)
{
    const wb_state *s = t->s;
    c->flags |= WB_F_HOOK;
    uint32_t fs = use_pool(t, c);
    c->soff = (uint32_t)((c->id + c->sent) % (c->ssize / fs)) * fs;
    c->sunsent = fs;
    wb_add(&t->st.msgs_tx, 1);
    wb_add(&t->st.bytes_tx, s->payload_len);
    wb_conn_dirty(t, c);
}

static int connect_message(wb_thread *t, wb_conn *c, unsigned op, uint64_t len, const uint8_t *head,
                           size_t hlen)
{
    (void)op;
    (void)len;
    (void)head;
    (void)hlen;
    c->flags &= ~WB_F_HOOK;
    c->recvd++;
    wb_conn_close(t, c);
    return 0;
}

/* A cycle ended: its whole time is the latency; the slot is reopened at the next turn (a
 * connect that fails at once must not recurse). */
static void connect_ended(wb_thread *t, wb_conn *c)
{
    if (c->recvd) {
        wb_hist_record(&t->lat, wb_now() - c->t0);
        c->recvd = 0;
    }
}

static void connect_turn(wb_thread *t)
{
    const wb_state *s = t->s;
    if (t->stopping || t->phase_seen != WB_P_RUN) return;
    for (unsigned i = 0; i < t->nconns; i++) {
        wb_conn *c = &t->conns[i];
        if (c->state != WB_C_IDLE || (c->flags & WB_F_DONE)) continue;
        if (!c->quota) c->quota = quota_of(s, c);
        if (c->quota && c->sent >= c->quota) {
            conn_done(t, c);
            continue;
        }
        /* -n counts attempts, failed ones too (as ab counts failed requests): a slot whose
         * server refuses it still reaches its quota. */
        c->sent++;
        wb_conn_start(t, c);
    }
}

const wb_scen wb_scen_connect = {
    .setup = connect_setup,
    .teardown = echo_teardown,
    .open = connect_open,
    .message = connect_message,
    .ended = connect_ended,
    .turn = connect_turn,
    .start_on_run = 1,
};

/* ----- hold: open connections and keep them idle ------------------------------------------- */

const wb_scen wb_scen_hold = {0};

/* ----- pubsub: publishers and subscribers over topics (wsserve --pubsub) ------------------- */

/* Connections 0 .. publishers - 1 publish, the others subscribe; connection i uses topic
 * i % topics among its kind, so publishers spread over the topics first.  Topic K is
 * "wsbench-K"; with --patterns, publishers publish to "wsbench.K.m" and subscribers listen to
 * "wsbench.K.*": the same deliveries, found through the server's pattern matching.  A raw topic
 * socket of wsserve --pubsub (ws://HOST/TOPIC) subscribes to TOPIC and publishes what it sends
 * there, without getting its own messages back.  Publishers send at --rate (open loop) and every
 * message carries its intended send time, so the latency is end to end. */
#define PUB_RING  256 /* frames a publisher may have waiting for the kernel */
#define PUB_STAMP 16  /* the send time in 16 hex digits: valid in a text message too */

static int pubsub_setup(wb_state *s, char *why, size_t cap)
{
    const wb_opts *o = s->o;
    size_t len = o->size < PUB_STAMP ? PUB_STAMP : o->size;
    s->payload = malloc(len);
    if (!s->payload) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < len; i++) s->payload[i] = (uint8_t)('a' + i % 26);
    s->payload_len = len;
    s->frame_size = (uint32_t)(wsk_frame_header_size(len, 1) + len);
    s->publishers = o->publishers;
    return 0;
}

static void pubsub_teardown(wb_state *s)
{
    free(s->payload);
}

static void pubsub_path(wb_state *s, wb_conn *c, char *buf, size_t cap)
{
    const char *path = WB_DEST(s, c)->path, *q = strchr(path, '?');
    size_t base = q ? (size_t)(q - path) : strlen(path);
    unsigned topics = s->o->topics ? s->o->topics : 1;
    int pub = c->id < s->publishers;
    unsigned k = pub ? c->id : c->id - s->publishers;
    snprintf(buf, cap, "%.*s%swsbench%s%u%s%s", (int)base, path,
             base && path[base - 1] == '/' ? "" : "/", s->o->patterns ? "." : "-", k % topics,
             !s->o->patterns ? ""
             : pub           ? ".m"
                             : ".*",
             q ? q : "");
}

static void pubsub_open(wb_thread *t, wb_conn *c)
{
    wb_state *s = t->s;
    c->flags |= WB_F_HOOK;
    c->sent = c->recvd = c->sched = 0;
    if (c->id >= s->publishers) return;
    if (!c->own) c->own = malloc((size_t)PUB_RING * s->frame_size);
    if (!c->own) {
        wb_conn_fail(t, c, WB_E_CONNECT, "out of memory");
        return;
    }
    c->sbase = c->own;
    c->ssize = PUB_RING * s->frame_size;
    c->soff = 0;
    wb_atomic_inc(&s->n_pub_open);
}

static void pubsub_start(wb_thread *t)
{
    const wb_state *s = t->s;
    list_open(t, s->publishers);
    if (t->nopen) rate_start(t, wb_atomic_get(&s->n_pub_open));
}

/* Builds each due message in place: its payload carries its intended send time. */
static void pubsub_fill(wb_thread *t, wb_conn *c)
{
    const wb_state *s = t->s;
    uint32_t fs = s->frame_size;
    uint64_t room = (c->ssize - c->sunsent) / fs;
    uint64_t k = c->owed < room ? c->owed : room;
    static const char hex[] = "0123456789abcdef";
    for (uint64_t i = 0; i < k; i++) {
        uint64_t due =
            t->rate_t0 + (uint64_t)((double)(c->local + c->sent * t->nopen) * t->rate_interval);
        uint8_t stamp[PUB_STAMP];
        for (int d = 0; d < PUB_STAMP; d++) stamp[d] = (uint8_t)hex[(due >> (60 - 4 * d)) & 15];
        uint8_t *f = c->own + (c->soff + c->sunsent) % c->ssize;
        uint32_t key = (uint32_t)wb_rand(&t->rng);
        size_t h = wsk_frame_header(f, 1, 0, s->o->binary ? WSK_OP_BINARY : WSK_OP_TEXT,
                                    s->payload_len, (const uint8_t *)&key);
        memcpy(f + h, stamp, PUB_STAMP);
        memcpy(f + h + PUB_STAMP, s->payload + PUB_STAMP, s->payload_len - PUB_STAMP);
        wsk_mask(f + h, s->payload_len, (const uint8_t *)&key, 0);
        c->sunsent += fs;
        c->sent++;
    }
    c->owed -= k;
    wb_add(&t->st.msgs_tx, k);
    wb_add(&t->st.bytes_tx, k * s->payload_len);
}

/* The send time a message starts with (PUB_STAMP lowercase hex digits of wb_now's clock,
 * CLOCK_MONOTONIC in ns): 0, or -1 when it has none. */
static int stamp_of(const uint8_t *head, size_t hlen, uint64_t *sent)
{
    *sent = 0;
    if (hlen < PUB_STAMP) return -1;
    for (int d = 0; d < PUB_STAMP; d++) {
        unsigned v = head[d] <= '9' ? head[d] - '0' : head[d] - 'a' + 10;
        if (v > 15) return -1;
        *sent = *sent << 4 | v;
    }
    return 0;
}

static int pubsub_message(wb_thread *t, wb_conn *c, unsigned op, uint64_t len, const uint8_t *head,
                          size_t hlen)
{
    const wb_state *s = t->s;
    uint64_t sent;
    (void)op;
    if (len != s->payload_len || hlen < PUB_STAMP)
        return wb_conn_fail(t, c, WB_E_MISMATCH, "delivery of %llu bytes, published %zu",
                            (unsigned long long)len, s->payload_len);
    if (stamp_of(head, hlen, &sent) < 0)
        return wb_conn_fail(t, c, WB_E_MISMATCH, "delivery without a send time");
    wb_hist_record(&t->lat, t->now > sent ? t->now - sent : 0);
    c->recvd++;
    return 0;
}

/* ----- listen: connections that only receive (a broadcasting server) ----------------------- */

static void listen_open(wb_thread *t, wb_conn *c)
{
    (void)t;
    c->flags |= WB_F_HOOK;
}

/* Counted by the engine; timed when it starts with its send time (stamp_of), as a program
 * behind wsserve --exec-shared can write it: printf '%016x' of CLOCK_MONOTONIC in ns. */
static int listen_message(wb_thread *t, wb_conn *c, unsigned op, uint64_t len, const uint8_t *head,
                          size_t hlen)
{
    uint64_t sent;
    (void)op;
    (void)len;
    if (stamp_of(head, hlen, &sent) == 0 && sent <= t->now) wb_hist_record(&t->lat, t->now - sent);
    c->recvd++;
    return 0;
}

const wb_scen wb_scen_listen = {
    .open = listen_open,
    .message = listen_message,
};

const wb_scen wb_scen_pubsub = {
    .setup = pubsub_setup,
    .teardown = pubsub_teardown,
    .path = pubsub_path,
    .open = pubsub_open,
    .message = pubsub_message,
    .start = pubsub_start,
    .fill = pubsub_fill,
    .turn = echo_turn,
};
