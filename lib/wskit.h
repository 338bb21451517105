/* wskit: WebSocket toolkit (RFC 6455, RFC 7692) on libev.  This header is the whole public API.
 *
 * Conventions
 *  - Every name starts with wsk_; every type is opaque unless its fields are documented here.
 *  - Names: the actions on a socket have Bun's verbs (wsk_send, wsk_close, wsk_subscribe,
 *    wsk_publish, ...); wsk_<object>_<x> reads x, wsk_<object>_set_<x> replaces it, and
 *    wsk_<object>_add_<x> / _append_<x> add to it.
 *  - Functions that can fail return a negative wsk_error (see wsk_strerror).  Every invalid
 *    argument is WSK_ERR_INVAL, and the call then changes nothing.  The object an operation is
 *    on (the loop, server, socket, request or response) must be a live one: it is not checked.
 *  - Ownership: what wsk_*_new and wsk_connect return belongs to the library; free loops and
 *    servers with their _free, and never free a socket (it is freed after its close handler).
 *  - Buffers passed in are only read during the call, and copied when kept, unless stated.
 *    Data and strings handed to a handler, or returned by a wsk_request_* or wsk_client_*
 *    reader, point into library buffers: valid until the handler returns unless stated, and
 *    not NUL-terminated unless stated.  A `size_t *len` out-argument may be NULL.
 *  - One thread per loop: nothing here is thread-safe, and nothing here has global mutable
 *    state; all shared state lives in a wsk_loop.  Handlers run on the thread that owns the
 *    socket (its loop's).  A server group (wsk_group_new) runs loops on several threads:
 *    wsk_group_call and wsk_group_shutdown may be called from any thread, everything else
 *    only from the thread of the loop the object lives on (see "Server groups").
 */
#ifndef WSKIT_H
#define WSKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WSK_API __attribute__((visibility("default")))

#define WSK_VERSION "0.1.0"

/* Errors: negative values, grouped by what went wrong. */
enum wsk_error {
    WSK_OK = 0,
    /* The peer broke the protocol (each maps to the close code the RFC names). */
    WSK_ERR_PROTOCOL = -1, /* 1002: framing or state error */
    WSK_ERR_UTF8 = -2,     /* 1007: invalid UTF-8 in a text message or close reason */
    WSK_ERR_TOO_BIG = -3,  /* 1009: message larger than the configured maximum */
    WSK_ERR_POLICY = -4,   /* 1008: refused by policy */
    WSK_ERR_DEFLATE = -5,  /* 1007: compressed data that does not inflate */
    /* HTTP and handshake. */
    WSK_ERR_HTTP = -10,        /* malformed HTTP message (400) */
    WSK_ERR_HEADER_SIZE = -11, /* header block over its cap (431) */
    WSK_ERR_HANDSHAKE = -12,   /* the handshake was refused or is invalid */
    WSK_ERR_URL = -13,         /* malformed or unsupported URL */
    /* Local conditions. */
    WSK_ERR_NOMEM = -20,
    WSK_ERR_INVAL = -21,  /* invalid argument */
    WSK_ERR_STATE = -22,  /* operation not valid in the current state */
    WSK_ERR_IO = -23,     /* read/write failed (errno has details where it applies) */
    WSK_ERR_CLOSED = -24, /* the connection is closed */
    WSK_ERR_TIMEOUT = -25,
    WSK_ERR_DNS = -26,
    WSK_ERR_CONNECT = -27,
    WSK_ERR_TLS = -28,
    WSK_ERR_CERT = -29, /* the peer's certificate did not verify */
};

/* A static, one-line description of an error code (never NULL; "unknown error" for others). */
WSK_API const char *wsk_strerror(int err);

/* Writes "wskit 0.1.0, libev 4.33, zlib 1.2.13, libdeflate 1.14, ISA-L 2.30.0, mbedTLS 2.28.3,
 * ipsec-mb 1.3.0" into the caller's buf of cap bytes, as snprintf does: NUL-terminated, cut at
 * cap - 1, and returns the whole length (cap 0 with a NULL buf measures).  The versions are those
 * the libraries report at run time (libev, zlib, mbedTLS, ipsec-mb) or were built with
 * (libdeflate and ISA-L offer no call). */
WSK_API long wsk_versions(char *buf, size_t cap);

/* Message and frame opcodes (RFC 6455 section 5.2). */
typedef enum wsk_opcode {
    WSK_OP_CONT = 0x0,
    WSK_OP_TEXT = 0x1,
    WSK_OP_BINARY = 0x2,
    WSK_OP_CLOSE = 0x8,
    WSK_OP_PING = 0x9,
    WSK_OP_PONG = 0xA,
} wsk_opcode;

/* Close codes used by wskit (RFC 6455 section 7.4.1). */
enum wsk_close_code {
    WSK_CLOSE_NORMAL = 1000,
    WSK_CLOSE_GOING_AWAY = 1001,
    WSK_CLOSE_PROTOCOL = 1002,
    WSK_CLOSE_UNSUPPORTED = 1003,
    WSK_CLOSE_NO_STATUS = 1005, /* never sent: reported when a close frame had no code */
    WSK_CLOSE_ABNORMAL = 1006,  /* never sent: reported when TCP closed without a close frame */
    WSK_CLOSE_INVALID_DATA = 1007,
    WSK_CLOSE_POLICY = 1008,
    WSK_CLOSE_TOO_BIG = 1009,
    WSK_CLOSE_EXTENSION = 1010,
    WSK_CLOSE_INTERNAL = 1011,
};

/* ---------------------------------------------------------------------------------------------
 * Loop: the state every socket of one libev loop shares (receive buffer, write batching, shared
 * compressors, logging).  Create one per ev_loop, before any server or client on it.
 */
struct ev_loop;
typedef struct wsk_loop wsk_loop;
typedef struct wsk_server wsk_server;
typedef struct wsk_ws wsk_ws;
typedef struct wsk_request wsk_request;
typedef struct wsk_response wsk_response;

/* A loop context on `ev` (NULL: libev's default loop), or NULL when memory is short.  The
 * caller owns it; `ev` stays the caller's and must outlive it. */
WSK_API wsk_loop *wsk_loop_new(struct ev_loop *ev);
/* Frees the loop context (NULL: nothing).  Free its servers first, and let its client sockets
 * close; the ev_loop itself is not freed. */
WSK_API void wsk_loop_free(wsk_loop *loop);
/* The ev_loop the context runs on (libev's default loop when it was created with NULL). */
WSK_API struct ev_loop *wsk_loop_ev(wsk_loop *loop);

enum wsk_log_level { WSK_LOG_ERROR = 0, WSK_LOG_WARN = 1, WSK_LOG_INFO = 2, WSK_LOG_DEBUG = 3 };
/* Where one-line log messages up to max_level go: fn(arg, level, msg), msg without a newline and
 * valid during the call; arg is passed through and stays the caller's.  The default writes
 * lines up to WSK_LOG_WARN to stderr.  fn NULL silences the library. */
WSK_API void wsk_loop_set_log(wsk_loop *loop, int max_level,
                              void (*fn)(void *arg, int level, const char *msg), void *arg);

/* ---------------------------------------------------------------------------------------------
 * Handlers: one table per server (or per client), never per socket.  Copied when the server or
 * client is created.  Every pointer may be NULL.  Data handed to a handler points into
 * library buffers and is valid until the handler returns.  Any handler may send, close or
 * terminate the socket it is given.
 */
struct wsk_history_pos; /* below, with the bridge */

typedef struct wsk_handlers {
    /* Server: an upgrade request arrived.  Return 0 to accept (optionally setting user data,
     * extra response headers and the subprotocol through `res`), or an HTTP status >= 400 to
     * refuse it with that status (and the body set through `res`, if any). */
    int (*upgrade)(wsk_server *srv, const wsk_request *req, wsk_response *res);
    /* The socket is open: the handshake completed. */
    void (*open)(wsk_ws *ws);
    /* A whole message (after reassembly and decompression).  op is WSK_OP_TEXT (valid UTF-8,
     * not NUL-terminated) or WSK_OP_BINARY. */
    void (*message)(wsk_ws *ws, const void *data, size_t len, wsk_opcode op);
    /* The socket closed: code is the peer's close code, 1005 when its close frame had none, or
     * 1006 when the connection ended without a closing handshake; reason[0..reason_len) is not
     * NUL-terminated.  A peer's close was already answered with its code (a server's answer
     * carries its reason too).  The socket must not be used once this returns (the library frees
     * it). */
    void (*close)(wsk_ws *ws, unsigned code, const char *reason, size_t reason_len);
    /* The send queue, which had backpressure (a send returned -1, or 0 at the backpressure
     * limit), has been written out. */
    void (*drain)(wsk_ws *ws);
    /* The connection failed: the peer broke the protocol (err WSK_ERR_PROTOCOL, _UTF8, _TOO_BIG,
     * ...; the peer is sent the matching close code) or a local error occurred; msg is a
     * NUL-terminated description.  `close` follows. */
    void (*error)(wsk_ws *ws, int err, const char *msg);
    /* Control frames as they arrive (pings are answered automatically). */
    void (*ping)(wsk_ws *ws, const void *data, size_t len);
    void (*pong)(wsk_ws *ws, const void *data, size_t len);
    /* Server: a plain HTTP request (not an upgrade).  Set the status, headers and body through
     * `res`; without this handler the server answers 426 Upgrade Required. */
    void (*request)(wsk_server *srv, const wsk_request *req, wsk_response *res);
    /* Server with a bridge: a message from another node, for topic[0..tlen) (a name, never a
     * pattern).  NULL: the library delivers it to the topic's subscribers here.  Set: the
     * handler delivers it, with wsk_server_publish_local, to the topic and to the topics it
     * derives from it (wsk_server_opts.bridge_derived).  data is valid until it returns.  at:
     * the message's place in the engine's history (wsk_server_publish_history, on any node;
     * this one's included), NULL for a message without one; offset 0 (with mine set) for a
     * message of this node that the engine refused to keep (its script failed: Redis out of
     * memory), handed back here only and counted in wsk_bridge_stats.failed.  Returns the
     * sockets it delivered the message to here, all forms together (what its
     * wsk_server_publish_local calls returned; <0 counts as 0): for that refused message, the
     * local count its publisher's done hears (wsk_server_publish_history); ignored otherwise.
     * compress holds the publish's WSK_PUB_* flags, to hand on to wsk_server_publish_local
     * (WSK_PUB_RETAINED: a retained publish). */
    long (*bridged)(wsk_server *srv, const char *topic, size_t tlen, const void *data, size_t len,
                    wsk_opcode op, int compress, const struct wsk_history_pos *at);
} wsk_handlers;

/* ---------------------------------------------------------------------------------------------
 * Server
 */
typedef struct wsk_server_opts {
    size_t max_payload;              /* largest message accepted (1009 beyond); 16 MiB */
    unsigned idle_timeout;           /* seconds without traffic before closing; 120; 0 = never */
    int send_pings;                  /* ping idle sockets at half the idle timeout; 1 */
    size_t backpressure_limit;       /* bytes queued per socket before sends are dropped; 1 MiB */
    int close_on_backpressure_limit; /* close (1008) instead of dropping; 0 */
    int publish_to_self;             /* wsk_publish from a socket reaches that socket too; 0 */
    size_t max_header;               /* request head cap, 431 beyond; 8 KiB */
    size_t max_body;                 /* plain HTTP request body cap, 413 beyond; 1 MiB */
    unsigned handshake_timeout;      /* seconds for a client to complete its request head; 10 */
    unsigned close_timeout;          /* seconds to wait for the peer's close frame; 4 */
    size_t max_connections;          /* further connections are refused; 0 = no limit */
    int reuse_port; /* SO_REUSEPORT on the listeners: processes that all set it may listen on
                     * one port, and the kernel spreads new connections over them; 0 */
    int compress;   /* a wsk_compress_mode for messages sent; WSK_COMPRESS_DISABLE */
    int decompress; /* a wsk_compress_mode for messages received */
    size_t compress_threshold;    /* messages shorter than this go uncompressed; 64 */
    int compress_level;           /* deflate level 1 (fastest) .. 9 (smallest); 6 */
    const char *tls_cert;         /* PEM certificate chain: serve wss (NULL: plain) */
    const char *tls_key;          /* PEM private key for tls_cert */
    const char *tls_key_password; /* NULL when the key is not encrypted */
    const char *tls_client_ca;    /* PEM CA bundle: require client certificates signed by it */
    /* With a bridge: topics named this prefix + T are derived from T (a second form of T's
     * messages, made by the bridged handler on each node).  The engine carries T only: a
     * publish to a derived topic stays on this node, and a node is subscribed to T's channel
     * while T or prefix + T has subscribers here, so the engine counts it once.  NULL: none.
     * Kept, not copied: a string that outlives the server (a literal). */
    const char *bridge_derived;
} wsk_server_opts;

/* permessage-deflate compressor modes, with Bun's names (see wsk_compress_mode_parse). */
enum wsk_compress_mode {
    WSK_COMPRESS_DISABLE = 0,
    WSK_COMPRESS_SHARED,    /* one compressor for all sockets, no context takeover */
    WSK_COMPRESS_DEDICATED, /* one per socket with a 32 KiB window (= 256KB) */
    WSK_COMPRESS_3KB,
    WSK_COMPRESS_4KB,
    WSK_COMPRESS_8KB,
    WSK_COMPRESS_16KB,
    WSK_COMPRESS_32KB,
    WSK_COMPRESS_64KB,
    WSK_COMPRESS_128KB,
    WSK_COMPRESS_256KB,
};
/* The mode named by "disable", "shared", "dedicated", "3KB" ... "256KB" (any case; also "false"
 * and "true" for disable and shared); WSK_ERR_INVAL for another name or NULL. */
WSK_API int wsk_compress_mode_parse(const char *name);

/* Fills `o` with the defaults above. */
WSK_API void wsk_server_opts_init(wsk_server_opts *o);

/* A server on `loop` with copies of `opts` (NULL: defaults) and of `h`; the strings opts points
 * to (TLS file names) are read during the call only.  NULL on failure, the reason logged:
 * compress or decompress is not a wsk_compress_mode, compress_level is not 1..9, bad TLS files,
 * no memory.  `user` stays the caller's and is returned by wsk_server_user.  The caller owns the
 * server: wsk_server_free, before wsk_loop_free. */
WSK_API wsk_server *wsk_server_new(wsk_loop *loop, const wsk_server_opts *opts,
                                   const wsk_handlers *h, void *user);
/* Listens on host:port (host: an IPv4 or IPv6 literal or a name; NULL or "" = 127.0.0.1; "*" =
 * every address, both families), with SO_REUSEPORT when opts.reuse_port is set (port 0 then
 * still picks a port of its own).  May be called several times.  port 0 picks a free port
 * (see wsk_server_port).  0, WSK_ERR_INVAL (port over 65535), or WSK_ERR_IO / WSK_ERR_DNS
 * (errno set). */
WSK_API int wsk_server_listen(wsk_server *srv, const char *host, unsigned port);
/* The port of the first listening socket, 0 when there is none. */
WSK_API unsigned wsk_server_port(const wsk_server *srv);
/* The `user` pointer given to wsk_server_new. */
WSK_API void *wsk_server_user(const wsk_server *srv);
/* The loop context the server was created on. */
WSK_API wsk_loop *wsk_server_loop(const wsk_server *srv);
/* Open WebSocket connections (handshake completed, not yet closed). */
WSK_API size_t wsk_server_connections(const wsk_server *srv);
/* Stops listening, sends close `code` and `reason` (a NUL-terminated string or NULL, copied) to
 * every socket and terminates those that have not finished the closing handshake after `grace`
 * seconds.  done(srv, dropped) is called once every socket is gone (NULL: not told); dropped
 * counts the sockets that still had unsent data.  The server is not freed.  0; WSK_ERR_INVAL
 * for a code or reason wsk_close refuses or a negative grace; WSK_ERR_STATE when a shutdown
 * is already under way. */
WSK_API int wsk_server_shutdown(wsk_server *srv, unsigned code, const char *reason, double grace,
                                void (*done)(wsk_server *srv, size_t dropped));
/* Terminates every connection (close handlers run, with 1001) and frees the server and its
 * topics.  NULL: nothing. */
WSK_API void wsk_server_free(wsk_server *srv);

/* ---------------------------------------------------------------------------------------------
 * Requests (upgrade and plain HTTP) and their responses.  The library owns both: a wsk_request,
 * the strings it returns and the wsk_response are valid only during the handler that received
 * them.  Returned strings point into the request's bytes and are not NUL-terminated.
 */
/* The method ("GET"). */
WSK_API const char *wsk_request_method(const wsk_request *req, size_t *len);
/* The path without the query ("/chat"). */
WSK_API const char *wsk_request_path(const wsk_request *req, size_t *len);
/* The query without '?' ("" when there is none). */
WSK_API const char *wsk_request_query(const wsk_request *req, size_t *len);
/* The value of the first header named `name` (NUL-terminated, case-insensitive), NULL when
 * absent (or name NULL). */
WSK_API const char *wsk_request_header(const wsk_request *req, const char *name, size_t *len);
/* The number of request headers. */
WSK_API size_t wsk_request_header_count(const wsk_request *req);
/* The i-th header's name and value (in order of arrival), 0 <= i < wsk_request_header_count,
 * through the outputs that are not NULL: 0, or WSK_ERR_INVAL for i out of range (outputs
 * untouched). */
WSK_API int wsk_request_header_at(const wsk_request *req, size_t i, const char **name,
                                  size_t *name_len, const char **value, size_t *value_len);
/* Copies the percent-decoded value of query parameter `name` (NUL-terminated) into buf
 * (NUL-terminated, cut to cap - 1; buf may be NULL when cap is 0); returns its full decoded
 * length, -1 when the parameter is absent, WSK_ERR_INVAL for name NULL or buf NULL with a cap. */
WSK_API long wsk_request_query_param(const wsk_request *req, const char *name, char *buf,
                                     size_t cap);
/* 1 when the client offered `proto` (NUL-terminated) in Sec-WebSocket-Protocol, else 0;
 * WSK_ERR_INVAL for proto NULL. */
WSK_API int wsk_request_offers_protocol(const wsk_request *req, const char *proto);
/* The body of a plain request (Content-Length bytes; chunked bodies are refused with 411),
 * NULL/0 when there is none. */
WSK_API const void *wsk_request_body(const wsk_request *req, size_t *len);
/* The peer's address as "1.2.3.4:port" or "[::1]:port" in the caller's buf (NUL-terminated, cut
 * to cap); returns buf. */
WSK_API const char *wsk_request_remote_address(const wsk_request *req, char *buf, size_t cap);

/* The response to a plain request, or to an upgrade: the strings and data given are copied. */

/* Plain requests: the status of the response (200 until set), 200-599.  0; WSK_ERR_INVAL for
 * another status; WSK_ERR_STATE in an upgrade handler, whose return value is the status. */
WSK_API int wsk_response_set_status(wsk_response *res, int status);
/* Adds a header `name: value` (NUL-terminated strings; also to a 101 response: Set-Cookie,
 * ...).  0; WSK_ERR_INVAL when name is not an HTTP token or value has CR or LF;
 * WSK_ERR_TOO_BIG past 16 KiB of headers; WSK_ERR_NOMEM. */
WSK_API int wsk_response_add_header(wsk_response *res, const char *name, const char *value);
/* Appends data[0..len) to the body (a plain response, or a refused upgrade's).  0;
 * WSK_ERR_INVAL (data NULL with len > 0); WSK_ERR_TOO_BIG past 1 GiB; WSK_ERR_NOMEM. */
WSK_API int wsk_response_append_body(wsk_response *res, const void *data, size_t len);
/* Upgrade only: the user data of the new socket (wsk_ws_data); it stays the caller's. */
WSK_API void wsk_response_set_data(wsk_response *res, void *data);
/* Upgrade only: the subprotocol to answer with (NUL-terminated, copied).  0; WSK_ERR_INVAL
 * when the client did not offer it (see wsk_request_offers_protocol); WSK_ERR_STATE when
 * answering a plain request. */
WSK_API int wsk_response_set_protocol(wsk_response *res, const char *proto);

/* Plain requests answered later, when what the answer needs has come (another node's count,
 * ...).  Called in the request handler: nothing is sent when the handler returns, and what `res`
 * holds then (status, headers, body) is the fallback, sent as it stands when the answer has not
 * come after `timeout` seconds (> 0).  Meanwhile the connection reads nothing.  After the
 * response the connection stays open for the next request as after an immediate answer
 * (HTTP/1.1 without "Connection: close"), except when the client sent more behind the request
 * before the answer went (pipelined): that is not answered, and the connection closes.
 * Returns the handle for wsk_deferred_respond, or NULL (an upgrade's response, a second call,
 * timeout not > 0, no memory): the response then goes when the handler returns, as usual. */
typedef struct wsk_deferred wsk_deferred;
WSK_API wsk_deferred *wsk_response_defer(wsk_response *res, double timeout);
/* Answers a deferred request: status (200-599) and body[0..len) (copied) replace the
 * fallback's, its headers stay.  The caller must call it exactly once for each handle, also when
 * it is too late (then it only frees).  Returns 1 when the answer is sent, 0 when it was too late
 * (the fallback went at the timeout, the client left, the server was freed), WSK_ERR_INVAL for
 * another status or body NULL with len > 0, WSK_ERR_NOMEM (for both: the fallback goes, if still
 * in time).  Frees d in every case; call it on the server's loop. */
WSK_API int wsk_deferred_respond(wsk_deferred *d, int status, const void *body, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Sockets.  The library owns every wsk_ws: a server socket is valid from its open handler, a
 * client socket from wsk_connect's return, until its close handler returns.  A call that runs
 * the close handler (a send past the backpressure limit with close_on_backpressure_limit,
 * wsk_terminate) leaves the socket usable until the handler that made the call returns; the
 * calls below then do nothing (sends return 0).
 */
enum wsk_ready_state { WSK_CONNECTING = 0, WSK_OPEN = 1, WSK_CLOSING = 2, WSK_CLOSED = 3 };

/* The largest message one send or publish takes, just under 4 GiB (a frame is built in one
 * block with 32-bit lengths). */
#define WSK_MESSAGE_MAX 0xFFFFFF00u

/* Sends a message: op WSK_OP_TEXT (data must be valid UTF-8; not checked) or WSK_OP_BINARY.
 * data[0..len) is copied before the call returns.  compress asks for permessage-deflate when it
 * was negotiated (messages under compress_threshold go uncompressed, and so do those that would
 * not shrink when the socket's compressor keeps no context).  Sends are batched:
 * everything sent during one loop iteration leaves in one write at its end (wsk_cork: now).
 * A server's message of 16 KiB or more on a socket with nothing queued is written during the
 * call instead, from data itself (plain TCP; only what the kernel does not take is copied, and
 * not even that for the message this socket's handler was given from its message buffer, which
 * the queue then keeps until it is written).
 * Returns, as Bun's ServerWebSocket.send does:
 *   len  (the payload bytes; 1 for an empty message) when the message goes out with this
 *        iteration's write (or went out during the call);
 *   -1   when it was queued behind data the peer has not read yet, or the kernel took only
 *        part of it (backpressure: the drain handler follows);
 *   0    when it was dropped: the socket is not open (connecting or closing), or its queue is
 *        at the backpressure limit (the drain handler follows once the queue is written out;
 *        with close_on_backpressure_limit the socket is also failed with 1008: its error and
 *        close handlers run before this returns);
 *   WSK_ERR_INVAL for another opcode, data NULL with len > 0, or len over WSK_MESSAGE_MAX.
 * -1 is backpressure, never WSK_ERR_PROTOCOL: no send reports a protocol error. */
WSK_API long wsk_send(wsk_ws *ws, const void *data, size_t len, wsk_opcode op, int compress);
/* Sends a ping or a pong with payload data[0..len) (copied), len at most 125 (RFC 6455 5.5).
 * Returns as wsk_send; WSK_ERR_INVAL when len is over 125 or data NULL with len > 0. */
WSK_API long wsk_ping(wsk_ws *ws, const void *data, size_t len);
WSK_API long wsk_pong(wsk_ws *ws, const void *data, size_t len);
/* Runs fn(ws, arg) and writes what it sent at once, in one write, instead of at the end of the
 * loop iteration.  arg stays the caller's.  0, or WSK_ERR_INVAL when fn is NULL. */
WSK_API int wsk_cork(wsk_ws *ws, void (*fn)(wsk_ws *ws, void *arg), void *arg);
/* Starts the closing handshake with `code` and reason[0..len) (copied); the close handler runs
 * once the peer answers or close_timeout passes.  code 0 sends a close frame without a code,
 * and then len must be 0.  Otherwise code must be one a peer may receive (RFC 6455 7.4):
 * 1000-1003, 1007-1014 or 3000-4999 (not 1004-1006, 1015, below 1000, 1016-2999 or over 4999),
 * and the reason at most 123 bytes of valid UTF-8 (reason may be NULL when len is 0).
 * 0 (also when the socket is already closing or closed: nothing is sent again); WSK_ERR_INVAL
 * for a code or reason that may not be sent; WSK_ERR_STATE for a client socket still
 * connecting (use wsk_terminate). */
WSK_API int wsk_close(wsk_ws *ws, unsigned code, const char *reason, size_t len);
/* Drops the connection at once, without a closing handshake: the close handler runs with 1006
 * before this returns (a client socket still connecting just ends, without handlers).  Nothing
 * for a socket already closed. */
WSK_API void wsk_terminate(wsk_ws *ws);

/* The socket's user data (wsk_response_set_data's, or wsk_connect's `user`; NULL otherwise), and
 * replacing it.  It stays the caller's: free it in the close handler if it needs freeing. */
WSK_API void *wsk_ws_data(const wsk_ws *ws);
WSK_API void wsk_ws_set_data(wsk_ws *ws, void *data);
/* A wsk_ready_state. */
WSK_API int wsk_ws_ready_state(const wsk_ws *ws);
/* Bytes queued and not yet written to the kernel. */
WSK_API size_t wsk_ws_buffered(const wsk_ws *ws);
/* Flow control of what the peer sends: wsk_ws_pause stops reading the socket (an open one;
 * nothing otherwise), so the kernel's buffers fill and TCP slows the peer down; wsk_ws_resume
 * reads again.  Messages already read (the rest of the current read) are still delivered after
 * the pause.  The idle timeout still applies (a socket paused that long is closed with 1001); a
 * peer whose FIN or reset reaches the kernel meanwhile is noticed within a second (the close
 * handler runs with 1006).  Closing (wsk_close, a failure) resumes reading for the closing
 * handshake.
 * wsk_ws_paused: 1 while paused, else 0. */
WSK_API void wsk_ws_pause(wsk_ws *ws);
WSK_API void wsk_ws_resume(wsk_ws *ws);
WSK_API int wsk_ws_paused(const wsk_ws *ws);
/* The negotiated subprotocol (NUL-terminated, "" when none), valid while the socket lives. */
WSK_API const char *wsk_ws_protocol(const wsk_ws *ws);
/* 1 when permessage-deflate was negotiated, else 0. */
WSK_API int wsk_ws_compressed(const wsk_ws *ws);
/* The server the socket belongs to (NULL for client sockets). */
WSK_API wsk_server *wsk_ws_server(const wsk_ws *ws);
/* The peer's address as "1.2.3.4:port" or "[::1]:port" in the caller's buf (NUL-terminated,
 * cut to cap); returns buf. */
WSK_API const char *wsk_ws_remote_address(const wsk_ws *ws, char *buf, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * Client
 */
typedef struct wsk_client_opts {
    const char *const *headers; /* extra raw "Name: value" request headers */
    size_t nheaders;
    const char *const *protocols; /* subprotocols to offer */
    size_t nprotocols;
    const char *origin;        /* Origin header, NULL for none */
    const char *auth;          /* "user:password" for Basic auth (else the URL's user info) */
    const char *host;          /* Host header to send instead of the URL's */
    const char *proxy;         /* "http://host:port": tunnel through an HTTP CONNECT proxy */
    unsigned connect_timeout;  /* seconds for DNS + TCP + TLS + handshake; 10 */
    int follow_redirects;      /* follow 301/302/303/307/308; 0 */
    unsigned max_redirects;    /* 10 */
    size_t max_payload;        /* as for servers: 16 MiB */
    unsigned idle_timeout;     /* 0 = never */
    int send_pings;            /* ping at half the idle timeout; 0 */
    size_t backpressure_limit; /* 1 MiB */
    unsigned close_timeout;    /* seconds to wait for the server to close TCP; 4 */
    size_t max_header;         /* response head cap; 16 KiB */
    int compress;              /* offer permessage-deflate: a wsk_compress_mode; disabled */
    const char *tls_ca;        /* PEM CA bundle to verify the server (default: the system's) */
    const char *tls_cert;      /* PEM client certificate */
    const char *tls_key;       /* PEM key of tls_cert */
    const char *tls_key_password;
    int tls_insecure; /* do not verify the server certificate */
    /* Resume TLS sessions (NULL: every handshake is a full one).  The caller's object, shared by
     * its connections one after another: a wss:// connection offers the session it holds when
     * that was made with the same host and port, and leaves its own there once its TLS
     * handshake is over.  It must outlive every connection made with it. */
    struct wsk_tls_session *tls_session;
} wsk_client_opts;

/* A TLS session to resume (see wsk_client_opts.tls_session): an opaque object made empty by
 * wsk_tls_session_new (NULL when memory is short) and freed with wsk_tls_session_free (NULL is
 * fine), after the last connection that used it ended. */
typedef struct wsk_tls_session wsk_tls_session;
WSK_API wsk_tls_session *wsk_tls_session_new(void);
WSK_API void wsk_tls_session_free(wsk_tls_session *ts);
/* 1 when ws's TLS handshake is over and resumed an earlier session (a client offering one, or a
 * server accepting a ticket or a cached session ID), else 0 (also for ws:// and NULL). */
WSK_API int wsk_tls_resumed(const wsk_ws *ws);

/* Fills `o` with the defaults above. */
WSK_API void wsk_client_opts_init(wsk_client_opts *o);

/* Connects to a ws:// or wss:// URL (NUL-terminated) without blocking; copies of the URL, of
 * opts (NULL: defaults; the strings and arrays it points to are copied too) and of h are kept.
 * A host name is resolved on a short-lived thread of its own, which wakes the loop, so the loop
 * never waits for DNS and connect_timeout covers it.  The open handler runs once the handshake
 * succeeds; on failure the error handler runs (WSK_ERR_DNS, _CONNECT, _TIMEOUT, _HANDSHAKE,
 * _TLS, _CERT) and then close with 1006.  Returns the socket (the library's: it is freed after
 * its close handler; `user` stays the caller's and is its wsk_ws_data), or NULL with *err set
 * when the URL is invalid (WSK_ERR_URL), a header or protocol cannot go in a request
 * (WSK_ERR_INVAL: CR or LF, not a token; also loop or url NULL, or compress not a
 * wsk_compress_mode) or memory is short.  err may be NULL. */
WSK_API wsk_ws *wsk_connect(wsk_loop *loop, const char *url, const wsk_client_opts *opts,
                            const wsk_handlers *h, void *user, int *err);

/* The HTTP exchange of a client's opening handshake, for diagnostics.  The status stays valid
 * for the life of the socket; the rest only during the open handler, and during the error
 * handler of a refused or invalid handshake (NULL or 0 elsewhere, and for server sockets).
 * Strings point into the library's copy of the response and are not NUL-terminated unless
 * stated. */

/* The status of the last response head: 101 once open, the refusal's status (403, 200, ...)
 * when the server refused, 0 before any response. */
WSK_API int wsk_client_status(const wsk_ws *ws);
/* The value of the first response header named `name` (NUL-terminated, case-insensitive),
 * NULL when absent (or name NULL). */
WSK_API const char *wsk_client_header(const wsk_ws *ws, const char *name, size_t *len);
/* The number of response headers. */
WSK_API size_t wsk_client_header_count(const wsk_ws *ws);
/* The i-th response header's name and value, 0 <= i < wsk_client_header_count, through the
 * outputs that are not NULL: 0, or WSK_ERR_INVAL for i out of range or when the response is
 * gone (outputs untouched). */
WSK_API int wsk_client_header_at(const wsk_ws *ws, size_t i, const char **name, size_t *name_len,
                                 const char **value, size_t *value_len);
/* The response head as received: status line, headers and the empty line. */
WSK_API const char *wsk_client_response_head(const wsk_ws *ws, size_t *len);
/* The body of a refused handshake (de-chunked; at most 64 KiB), NULL when it had none. */
WSK_API const void *wsk_client_response_body(const wsk_ws *ws, size_t *len);
/* The upgrade request as sent (NUL-terminated); NULL when none left (a failure before it was
 * written, e.g. in the TLS handshake). */
WSK_API const char *wsk_client_request_head(const wsk_ws *ws, size_t *len);
/* The URL being connected to, as given or as the last followed redirect named it
 * (NUL-terminated; valid while the socket lives). */
WSK_API const char *wsk_client_url(const wsk_ws *ws);

/* How long the phases of a client's last connection attempt took, in seconds, each counting from
 * `start` (like curl's -w times); 0 for a phase not reached. */
typedef struct wsk_timing {
    double start;       /* ev_time() when the attempt began (after any redirect) */
    double dns;         /* the name resolved (the proxy's, with a proxy) */
    double connect;     /* TCP connected (to the proxy, with a proxy) */
    double tls;         /* the TLS handshake completed; 0 for ws://, -1 when it began and did
                         * not complete */
    double upgrade;     /* the 101 response arrived */
    unsigned redirects; /* redirects followed before this attempt */
} wsk_timing;
/* Fills the caller's *t with the client socket's timing (all 0 for a server socket); callable
 * for the life of the socket. */
WSK_API void wsk_client_timing(const wsk_ws *ws, wsk_timing *t);

/* ---------------------------------------------------------------------------------------------
 * Publish/subscribe (server sockets only), with Bun's semantics.  A topic is any byte string of
 * at most WSK_TOPIC_MAX bytes (topic NULL with len 0 is the empty one; NULL with len > 0 is
 * WSK_ERR_INVAL), compared byte for byte; it exists while it has subscribers.  Each server has
 * its own topics.  A published message is framed once and the same bytes are queued to every
 * subscriber, each under its own backpressure policy (as wsk_send).  A socket leaves its topics
 * when it closes, before its close handler runs.  Any of these may be called from any handler,
 * including while a publish is under way (a close handler run because a publish closed a socket
 * for backpressure may subscribe, unsubscribe or publish again).
 *
 * Patterns (NATS subjects): a topic's tokens are separated by '.'; subscribing to a topic with
 * a token "*" (exactly one token) or a last token ">" (one or more tokens) subscribes to every
 * topic that matches it: "orders.*.created", "metrics.>".  Other tokens match byte for byte,
 * and a pattern that starts with a wildcard does not match a topic starting with '$' (MQTT's
 * rule: a namespace of its own).  A publish reaches each socket once however many of its
 * subscriptions match; finding them costs in proportion to the topic's tokens and the patterns
 * that match, not to the number of patterns.  A pattern has at most WSK_PATTERN_TOKENS tokens.
 * With a bridge, patterns are subscribed on the engine too (Redis PSUBSCRIBE, NATS wildcard
 * subjects): a node gets a message once per subscription the engine matches, and the message
 * number in the envelope lets it deliver the first copy only.  A node does not subscribe on the
 * engine by name to a topic that one of its own patterns matches (the pattern brings it; when
 * the pattern goes, the name is subscribed again), so Redis counts such a node once in
 * wsk_server_publish_counted's nodes.  What remains counted more than once: a node with two
 * patterns that both match the topic and neither covers the other ("a.*.c" and "a.b.*" for
 * "a.b.c") counts twice; and Redis matches a pattern more widely than wskit does (its "*"
 * crosses dots), so a node with "a.*" counts for a publish to "a.b.c" that it drops.
 */
#define WSK_TOPIC_MAX      65535
#define WSK_PATTERN_TOKENS 128

/* Subscribes an open server socket to `topic` (topic[0..len), copied; a pattern subscribes to
 * the topics it matches).  1 when it was added, 0 when the socket was already subscribed to
 * that name, WSK_ERR_STATE (not open, or a client socket), WSK_ERR_INVAL (an invalid topic, a
 * pattern of more than WSK_PATTERN_TOKENS tokens) or WSK_ERR_NOMEM. */
WSK_API int wsk_subscribe(wsk_ws *ws, const char *topic, size_t len);
/* 1 when the socket was subscribed and has left the topic (freed if it was the last), 0 when it
 * was not subscribed (always, for a client socket), WSK_ERR_INVAL for an invalid topic. */
WSK_API int wsk_unsubscribe(wsk_ws *ws, const char *topic, size_t len);
/* 1 when the socket is subscribed to topic[0..len), 0 when it is not, WSK_ERR_INVAL for an
 * invalid topic. */
WSK_API int wsk_ws_subscribed(const wsk_ws *ws, const char *topic, size_t len);
/* Holds back from ws the messages of topic[0..len) (a name, copied), through whichever of its
 * subscriptions they would reach it (patterns included): for an application that sends them
 * to ws itself meanwhile (a replay of the topic's history, then a subscription by name), so
 * none arrives twice.  A socket holds up to WSK_HOLD_MAX topics at once, each on its own (a
 * hold that ended, below, keeps its place until released; the oldest such gives way to a new
 * one); a second call for a held topic holds it anew.  0; WSK_ERR_STATE (a client socket, or
 * WSK_HOLD_MAX topics held and none ended), WSK_ERR_INVAL (a pattern, an invalid topic),
 * WSK_ERR_NOMEM.  Holds go with the socket. */
#define WSK_HOLD_MAX 64
WSK_API int wsk_ws_hold(wsk_ws *ws, const char *topic, size_t len);
/* wsk_ws_hold for the messages other loops of ws's group publish only: those published on ws's
 * own loop reach it as they are made.  For a program whose other loops' messages come to ws's
 * loop behind a point it waits for (a read another loop makes, then the release, with
 * wsk_group_call_ordered) while its own loop's come after that point anyway.  Outside a group
 * it holds nothing back.  Returns as wsk_ws_hold; a second call (of either) holds anew. */
WSK_API int wsk_ws_hold_group(wsk_ws *ws, const char *topic, size_t len);
/* wsk_ws_hold that keeps the messages instead of leaving them out: every message of
 * topic[0..len) that would reach ws waits, copied, in a queue of the hold, in order, until the
 * hold ends or is released; then they are sent, behind whatever the application sent ws
 * meanwhile and ahead of every later message.  For an application that sends ws something
 * first (a retained message it asked for): nothing is lost, nothing comes twice, the order is
 * kept.  flags WSK_HOLD_GROUP: only the messages of ws's own loop are queued, those other loops
 * of its group publish are left out (as wsk_ws_hold_group holds them back); 0: those of every
 * loop are queued.  Each queued message keeps its WSK_PUB_RETAINED flag.  The queue counts against
 * ws's backpressure limit (with its send queue): a message that would cross it closes ws (1008,
 * logged) instead of leaving a gap.  Ending such a hold (wsk_ws_hold_end, wsk_ws_hold_end_topic) is
 * releasing it.  Held anew by this, the queue stays (a hold with WSK_HOLD_GROUP may become one
 * without) and what it holds so far is marked as queued before that point (the point a retained
 * read is made: wsk_ws_hold_release_topic with WSK_HOLD_SENT); by wsk_ws_hold or wsk_ws_hold_group,
 * what it queued is dropped (the application sends it itself then).  Returns as wsk_ws_hold. */
#define WSK_HOLD_GROUP 1
WSK_API int wsk_ws_hold_queue(wsk_ws *ws, const char *topic, size_t len, int flags);
/* Ends every hold of ws: messages published from now on reach ws again; in a server group,
 * those of other loops published before are still held back (as a new subscription does not
 * get them).  Nothing when ws holds nothing. */
WSK_API void wsk_ws_hold_end(wsk_ws *ws);
/* Ends every hold at once: every message that reaches ws from now on is delivered, those other
 * loops published before included.  For a program that knows where those stand: a release
 * that the publishing loop hands to ws's loop with wsk_group_call_ordered comes after the
 * messages that loop published before it, and before the later ones.  Nothing when ws holds
 * nothing. */
WSK_API void wsk_ws_hold_release(wsk_ws *ws);
/* wsk_ws_hold_end and wsk_ws_hold_release for the hold of topic[0..len) only (the others
 * stay).  Nothing when ws does not hold that topic. */
WSK_API void wsk_ws_hold_end_topic(wsk_ws *ws, const char *topic, size_t len);
/* The same as wsk_ws_hold_release for that topic's hold.  For a queuing hold (wsk_ws_hold_queue)
 * flags say what the application sent ws of the topic's retained message (read from where it
 * is kept) before this call, so that what the queue holds follows it as the topic's order
 * wants: 0, the queue goes out as it stands; WSK_HOLD_SENT, the retained message as of the
 * point the queue was last held anew (or its start), which supersedes the retained publishes
 * (WSK_PUB_RETAINED) queued before that point: they are dropped (that very one among them), the
 * others go in order; WSK_HOLD_FIRST, none (the read found none, or one that a retained publish
 * since replaced): the first retained publish queued goes first, then the others in order (so
 * the last retained one the socket gets is the topic's).  So a subscriber gets a retained
 * message first, then the rest in order, none twice. */
#define WSK_HOLD_SENT  2
#define WSK_HOLD_FIRST 4
WSK_API void wsk_ws_hold_release_topic(wsk_ws *ws, const char *topic, size_t len, int flags);
/* Calls fn(arg, topic, len) for each of the socket's topics, oldest subscription first, and
 * returns their number (fn may be NULL to count only).  The name is NUL-terminated, owned by
 * the library and valid during the call; fn must not subscribe or unsubscribe this socket. */
WSK_API size_t wsk_ws_subscriptions(const wsk_ws *ws,
                                    void (*fn)(void *arg, const char *topic, size_t len),
                                    void *arg);

/* Publishes a message (op WSK_OP_TEXT, which must be UTF-8, or WSK_OP_BINARY) to every open
 * subscriber of `topic` (or of a pattern that matches it: once each) except `from` itself,
 * unless the server's publish_to_self option is on.  `from` need not be subscribed.
 * data[0..len) is copied before the call returns.  compress holds flags: WSK_PUB_COMPRESS (any
 * odd value, 1 as before) asks for permessage-deflate on the subscribers that negotiated it
 * (compressed once for all those on the shared compressor); WSK_PUB_RETAINED says the message
 * is a retained publish (MQTT's retain: the topic's last state): a queuing hold knows it
 * (wsk_ws_hold_release_topic), it travels with the message to the other loops of a group and,
 * with a bridge whose engine keeps retained messages, the engine keeps it as the topic's
 * retained message (an empty one clears it), as wsk_server_publish_retained does.  The same
 * flags go to every publish call below and to the bridged handler.
 * Returns the number of sockets the message was queued for (sockets at their backpressure
 * limit are not counted; a socket past it with close_on_backpressure_limit is closed with 1008,
 * its close handler running before this returns); 0 when the topic has no other subscriber;
 * WSK_ERR_INVAL for another opcode, an invalid topic, data NULL with len > 0 or len over
 * WSK_MESSAGE_MAX; WSK_ERR_STATE for a client socket.
 * Unlike Bun, whose publish returns the bytes of the message (or 0 when nobody got it), the
 * count is of sockets: it says how many received the message, which bytes would not. */
#define WSK_PUB_COMPRESS 1
#define WSK_PUB_RETAINED 2
WSK_API long wsk_publish(wsk_ws *from, const char *topic, size_t topic_len, const void *data,
                         size_t len, wsk_opcode op, int compress);
/* The same from the server: every open subscriber receives the message.  Returns as
 * wsk_publish (sockets), without WSK_ERR_STATE. */
WSK_API long wsk_server_publish(wsk_server *srv, const char *topic, size_t topic_len,
                                const void *data, size_t len, wsk_opcode op, int compress);
/* The same for this node's subscribers only: never forwarded through a bridge (the bridged
 * handler's way to deliver a message from another node).  Returns as wsk_server_publish. */
WSK_API long wsk_server_publish_local(wsk_server *srv, const char *topic, size_t topic_len,
                                      const void *data, size_t len, wsk_opcode op, int compress);
/* The same as wsk_publish for this node's subscribers only: never forwarded through a bridge,
 * and `from` left out unless publish_to_self (the bridged handler's way to deliver a message of
 * the engine's history that `from` published here: wsk_history_pos.mine).  Returns as
 * wsk_publish. */
WSK_API long wsk_publish_local(wsk_ws *from, const char *topic, size_t topic_len, const void *data,
                               size_t len, wsk_opcode op, int compress);
/* In a server group: the same as wsk_server_publish_local and wsk_publish_local for the
 * subscribers of the calling member's loop only (the other loops get nothing from it).  A
 * program that hands a message to each loop itself (wsk_group_call_ordered, one copy each)
 * delivers it there with these; without a group they are wsk_server_publish_local and
 * wsk_publish_local.  Returns as those. */
WSK_API long wsk_server_publish_here(wsk_server *srv, const char *topic, size_t topic_len,
                                     const void *data, size_t len, wsk_opcode op, int compress);
WSK_API long wsk_publish_here(wsk_ws *from, const char *topic, size_t topic_len, const void *data,
                              size_t len, wsk_opcode op, int compress);
/* Subscribers of `topic` (sockets that are open or closing) by that very name (a pattern's
 * own subscribers, for a pattern); 0 for an invalid topic. */
WSK_API size_t wsk_server_subscribers(const wsk_server *srv, const char *topic, size_t len);
/* 1 when a publish to `topic` would find a subscriber: of topic itself or of a pattern that
 * matches it; 0 when it would not or the topic is invalid. */
WSK_API int wsk_server_reaches(const wsk_server *srv, const char *topic, size_t len);
/* 1 when topic[0..tlen) matches pattern[0..plen) (see Patterns above; a name without
 * wildcards matches only itself), 0 when it does not. */
WSK_API int wsk_topic_match(const char *pattern, size_t plen, const char *topic, size_t tlen);
/* 1 when t[0..n) is a pattern (a token is "*", or the last one is ">"), 0 when not. */
WSK_API int wsk_topic_is_pattern(const char *t, size_t n);
/* Topics that have at least one subscriber. */
WSK_API size_t wsk_server_topics(const wsk_server *srv);
/* Calls fn(arg, topic, len, subscribers) for every topic that has subscribers (a pattern is a
 * topic of its own here; in a server group, every member's), in no particular order.  The name is
 * owned by the library and valid during the call; fn must not subscribe, unsubscribe, publish or
 * close. */
WSK_API void wsk_server_each_topic(const wsk_server *srv,
                                   void (*fn)(void *arg, const char *topic, size_t len,
                                              size_t subscribers),
                                   void *arg);
/* Calls fn(arg, ws) for every subscriber of topic[0..len) by that very name and returns their
 * number (fn may be NULL to count only); fn must not subscribe, unsubscribe, publish or close. */
WSK_API size_t wsk_server_each_subscriber(const wsk_server *srv, const char *topic, size_t len,
                                          void (*fn)(void *arg, wsk_ws *ws), void *arg);

/* ---------------------------------------------------------------------------------------------
 * Bridge: a server's topics shared with other processes and machines through an engine.
 *  - A node (server) subscribes on the engine to a topic when its first local subscriber
 *    arrives and leaves it when the last one leaves: the engine only carries topics someone
 *    listens to.  Channels are named prefix + topic.
 *  - wsk_publish and wsk_server_publish deliver locally at once, then forward the message once,
 *    in an envelope with the node's id, text/binary, compress and publish-to-self; other nodes
 *    deliver it to all their subscribers of the topic (or hand it to their bridged handler),
 *    and a node drops its own echo (unless the engine keeps history: see below).  Derived
 *    topics (wsk_server_opts.bridge_derived) are never forwarded: each node makes them from
 *    their topic's messages.  Order per topic is kept: one engine connection carries all of a
 *    topic's publishes, in order.  Messages forwarded during one loop iteration leave in one
 *    write.
 *  - Several URLs shard the topics by a stable hash of the name (FNV-1a, the same in every
 *    process): give every node the same list, in the same order.
 *  - An engine that is down: local delivery goes on; forwarded publishes fail (counted in
 *    wsk_bridge_stats.failed; wsk_server_bridged says 0), the outage is logged once with its
 *    reason (WSK_LOG_WARN) and again when it ends; the bridge reconnects (Redis: with backoff,
 *    0.1 s doubling to 5 s; NATS: the same until the first connection, then every 0.1 s, over the
 *    seed URLs) and subscribes again to every live topic.  An exception: once connected, the
 *    NATS client gives up reconnecting when a server refuses the credentials twice in a row;
 *    that is logged with its reason (WSK_LOG_ERROR), and the link stays down.  Publishes beyond
 *    8 MiB that the engine has not taken yet (Redis: not acknowledged; NATS: in the client's
 *    buffer) fail too: memory stays bounded.
 *  - The engine connections keep the loop running until wsk_server_free closes them.
 * Engines: "redis://[[USER]:PASSWORD@]HOST:PORT[/DB]" (HOST an address literal or a name,
 * resolved again before each connection attempt, off the loop's thread), and
 * "nats://[USER:PASSWORD@|TOKEN@]HOST:PORT[,HOST:PORT
 * ...]" (TOKEN: NATS token authentication; a NATS cluster's seed URLs, at most 16, one connection
 * that fails over; the NATS client runs threads of its own, the attempts before the first
 * connection among them, which only queue for the loop; wsk_server_free waits for the attempt
 * under way, up to the client's 2 s timeout).
 */
/* Bridges the server's topics through the engines at urls[0..nurls) (NUL-terminated, read
 * during the call; 1 to 16, all with the same scheme), naming channels prefix + topic (prefix
 * NUL-terminated, at most 64 bytes, NULL: "wskit:").  Connects in the background.  0;
 * WSK_ERR_INVAL (no URL, too many, prefix too long), WSK_ERR_URL (an unknown scheme, schemes
 * mixed, or a URL the engine refuses: the reason is logged), WSK_ERR_STATE (already bridged)
 * or WSK_ERR_NOMEM. */
WSK_API int wsk_server_bridge(wsk_server *srv, const char *const *urls, size_t nurls,
                              const char *prefix);
/* 1 when a publish to topic[0..len) is forwarded now (its engine connection is up), 0 when it
 * is not (a derived topic never is: wsk_server_opts.bridge_derived); WSK_ERR_STATE when the server
 * has no bridge, WSK_ERR_INVAL for an invalid topic.  On any member of a running server group,
 * the state of the bridging member's connections. */
WSK_API int wsk_server_bridged(const wsk_server *srv, const char *topic, size_t len);
/* Publishes as wsk_publish (from set: a socket of srv) or wsk_server_publish (from NULL), and
 * says how many other nodes got the message: done(arg, local, nodes) runs exactly once, with
 * local as returned here and nodes the engine's count of other nodes' subscriptions reached
 * (Redis: PUBLISH's reply less this node's own subscription), or WSK_NODES_UNKNOWN (forwarded,
 * but the engine cannot count: NATS, or the connection was lost before Redis answered), or
 * WSK_NODES_NOT_BRIDGED (not forwarded: no bridge, the engine down or its queue full, an
 * invalid argument).  It runs before this returns when there is nothing to wait for, else from
 * the loop once the engine answers (at the latest when the engine connection is lost or the server
 * freed).  arg stays the caller's and must stay valid until done runs.  Returns as
 * wsk_publish; WSK_ERR_INVAL (done not called) for done NULL or a socket of another server.
 * On a member of a server group without the bridge, the bridging member's loop forwards the
 * publish and done runs later on this member's loop (local: the whole group's count), with
 * the same outcomes; only when the group stops before the bridging loop took the publish does
 * done not run. */
#define WSK_NODES_UNKNOWN     (-1)
#define WSK_NODES_NOT_BRIDGED (-2)
WSK_API long wsk_server_publish_counted(wsk_server *srv, wsk_ws *from, const char *topic,
                                        size_t topic_len, const void *data, size_t len,
                                        wsk_opcode op, int compress,
                                        void (*done)(void *arg, long local, long nodes), void *arg);
typedef struct wsk_bridge_stats {
    uint64_t forwarded;       /* publishes handed to the engine */
    uint64_t failed;          /* publishes not forwarded: engine down, or its queue at the cap */
    uint64_t received;        /* messages from other nodes, delivered here */
    uint64_t echoes;          /* our own messages coming back, dropped */
    uint64_t foreign;         /* messages on our channels without our envelope, dropped */
    uint64_t outages;         /* times an engine connection was lost or could not be made */
    uint64_t remote;          /* other nodes' subscriptions the forwarded publishes reached, as the
                               * engine reports them (Redis: PUBLISH's reply minus this node); NATS
                               * cannot say, and leaves it 0 */
    unsigned links, links_up; /* engine connections, and those up now */
    uint64_t copies; /* second copies of a message (a node subscribed to its topic by name and by
                      * patterns gets one per subscription from the engine), dropped */
} wsk_bridge_stats;
/* Copies the bridge's counters into the caller's *st: 0, WSK_ERR_STATE without a bridge,
 * WSK_ERR_INVAL for st NULL.  In a server group, only the bridging member has them (they count
 * every member's forwarded publishes); the other members say WSK_ERR_STATE (wsk_group_stats
 * has the group's figures). */
WSK_API int wsk_server_bridge_stats(const wsk_server *srv, wsk_bridge_stats *st);

/* History in the engine: a topic's messages kept by the engine itself (Redis: a capped stream
 * per topic; NATS: a JetStream stream per topic, when the server has JetStream), each with an
 * offset that every node agrees on, so that a subscriber may come back on any node.  Engines
 * that keep no history (a NATS server without JetStream) say WSK_ERR_STATE to all of these.
 *  - wsk_server_publish_history hands the message to the engine, which numbers it, keeps it
 *    and publishes it; every node, this one included, delivers it when it comes back from the
 *    engine, through the bridged handler with its position (one connection carries a topic's
 *    messages, so every node delivers the same sequence).  Nothing is delivered before.
 *  - wsk_server_history_read reads what the engine keeps of a topic after an offset.
 *  - wsk_server_bridge_listen keeps the node subscribed to a topic's channel without a local
 *    subscriber: a subscriber being recovered hears the live messages that follow the ones
 *    read for it.
 * In a server group, only the bridging member may call them (the others: WSK_ERR_STATE). */
typedef struct wsk_history_pos {
    uint64_t offset; /* the topic's, from 1 */
    char epoch[17];  /* 16 hex digits: one life of the topic's history ("" for none yet) */
    uint64_t mine;   /* a message published here: wsk_server_publish_history's number; else 0 */
} wsk_history_pos;
/* Turns history in the engine on: at least the last depth messages per topic (depth >= 1),
 * for ttl seconds (0: no limit) after the topic's last publish (Redis) or each after its own
 * publish (NATS).  0; WSK_ERR_STATE without a bridge, on a member that does not bridge, or
 * with an engine that keeps no history (NATS: the server said it has no JetStream);
 * WSK_ERR_IO while that is not known yet (NATS: not connected yet): ask again later;
 * WSK_ERR_INVAL for depth 0 or a negative ttl. */
WSK_API int wsk_server_bridge_history(wsk_server *srv, size_t depth, double ttl);
/* Publishes data[0..len) to topic[0..tlen) (a name) through the engine's history (see above).
 * When the engine answers that it could not keep the message (Redis: the script failed, out of
 * memory), the message comes back to this node only, through the bridged handler with offset 0,
 * the publish counts as failed (wsk_bridge_stats), and done hears WSK_NODES_NOT_BRIDGED with
 * local the count the bridged handler returned (without one: wsk_server_publish_local's).
 * >0 when the engine took it: the message's number on this node, which its position carries
 * back (wsk_history_pos.mine) so that the caller may leave its publisher out; done, when not NULL,
 * runs once later as for wsk_server_publish_counted, with local 0 and nodes the engine's count with
 * this node's own subscription included (it delivers when the message comes back), arg kept valid
 * by the caller until then.  <0 when it could not go (WSK_ERR_STATE: no history in the engine;
 * WSK_ERR_IO: the engine is down or its queue full, counted in wsk_bridge_stats.failed;
 * WSK_ERR_INVAL): nothing was delivered, done does not run, and the caller may publish without
 * history. */
WSK_API long wsk_server_publish_history(wsk_server *srv, const char *topic, size_t tlen,
                                        const void *data, size_t len, wsk_opcode op, int compress,
                                        void (*done)(void *arg, long local, long nodes), void *arg);
/* One message read from the history; data valid during the callback. */
typedef struct wsk_history_msg {
    uint64_t offset;
    const void *data;
    size_t len;
    wsk_opcode op;
} wsk_history_msg;
/* What a read found.  ok 0: the engine could not be asked (down, lost meanwhile). */
typedef struct wsk_history_batch {
    int ok;
    wsk_history_pos head; /* where the topic stands: its last offset and epoch (0, "": none) */
    uint64_t first;       /* the oldest offset the history holds (0: none) */
    size_t n;             /* messages in m, oldest first, offsets after the read's `after` */
    const wsk_history_msg *m;
} wsk_history_batch;
/* Reads at most max (1 to 10,000) messages of topic[0..tlen) after offset `after`: done(arg, b)
 * runs once from the loop with the batch (b and its messages valid during the call), also
 * when the connection is lost first (ok 0) or the server is freed.  0; WSK_ERR_STATE (no
 * history in the engine), WSK_ERR_IO (the engine is down: done does not run), WSK_ERR_INVAL,
 * WSK_ERR_NOMEM. */
WSK_API int wsk_server_history_read(wsk_server *srv, const char *topic, size_t tlen, uint64_t after,
                                    size_t max, void (*done)(void *arg, const wsk_history_batch *b),
                                    void *arg);
/* on 1: the node listens to topic[0..tlen)'s channel (a name) as if it had a local subscriber,
 * until a matching call with on 0 (calls are counted).  0; WSK_ERR_STATE without a bridge,
 * WSK_ERR_INVAL (a pattern, no such hold to end), WSK_ERR_NOMEM. */
WSK_API int wsk_server_bridge_listen(wsk_server *srv, const char *topic, size_t tlen, int on);

/* Retained messages in the engine (Redis; NATS when its server has JetStream): a topic's
 * retained message kept by the engine, so that a subscriber on any node gets it.  A server
 * without a bridge says WSK_ERR_STATE to these.  In a server group, the bridging member makes
 * them all; another member only wsk_server_publish_retained with history 0 (its publish carries
 * the flag to the bridging loop): WSK_ERR_STATE to the others.  NATS keeps the message just
 * after its publish, not in the same step (a read in between finds the previous one; with
 * history, once the history stream stored it, and never over a later one); without JetStream
 * it only publishes, and the reads below say WSK_ERR_IO.
 *  - wsk_server_publish_retained publishes as wsk_server_publish_counted (history 0: local
 *    delivery at once, then the engine) or as wsk_server_publish_history (history 1: from is
 *    not used), and the engine keeps the message as the topic's retained one in the same step
 *    as its publish (so two nodes' retained publishes leave the one published last); len 0
 *    clears it (MQTT).  It is the publish call it stands for with WSK_PUB_RETAINED in compress
 *    (a retained publish, for every subscriber's queuing hold too), after the checks below.
 *    Made while the topic's engine connection is down (history 0), it reaches
 *    this node's subscribers only; the bridge keeps it (the last one per topic, 8 MiB in all)
 *    for the engine, which keeps it when the connection is back unless a retained publish of
 *    the topic from another node reached it later (Redis: by its clock, against the age of this
 *    one).  done may be NULL.  Returns as the call it stands for; WSK_ERR_STATE
 *    (see above), or WSK_ERR_INVAL for a topic that is a pattern or derived: then nothing was
 *    published.
 *  - wsk_server_retained_read asks the engine for the topic's retained message at a point in the
 *    order of the topic's messages: a subscription made before the call has had, by the time
 *    done runs, every message published before that point, and gets every later one live.
 *    done(arg, r) runs once from the loop (possibly after the caller's subscriber left: arg stays
 *    valid until then); r->found 0 with r->ok 1 says there is none to send: none kept, or a
 *    retained publish of the topic reached this node's subscribers since the call (they have
 *    that newer one).  r->ok 0: the engine could not answer (lost meanwhile, or the server
 *    freed).  None arrives twice.  A message published while the read is on its way reaches a
 *    subscriber as it comes (possibly before the retained message), unless the subscriber holds
 *    the topic with wsk_ws_hold_queue from the call until done has sent the answer and then
 *    releases it with WSK_HOLD_SENT (found) or WSK_HOLD_FIRST (none): then a retained message
 *    comes first (the one read, or the first published meanwhile), then those, in order. */
typedef struct wsk_retained {
    int ok, found;
    const void *data; /* the message, valid during the call */
    size_t len;
    wsk_opcode op;
    wsk_history_pos at; /* its place in the engine's history (offset 0: none) */
} wsk_retained;
WSK_API long wsk_server_publish_retained(wsk_server *srv, wsk_ws *from, const char *topic,
                                         size_t tlen, const void *data, size_t len, wsk_opcode op,
                                         int compress, int history,
                                         void (*done)(void *arg, long local, long nodes),
                                         void *arg);
/* 0 (done will run), WSK_ERR_STATE (see above), WSK_ERR_IO (the engine is down: done does not
 * run), WSK_ERR_INVAL (a pattern, a derived topic, done NULL), WSK_ERR_NOMEM. */
WSK_API int wsk_server_retained_read(wsk_server *srv, const char *topic, size_t tlen,
                                     void (*done)(void *arg, const wsk_retained *r), void *arg);
/* What the engine keeps of topics[0..n) (names, lens[i] bytes each; 1 to 10,000 of them):
 * done(arg, k) runs once from the loop with k[i] for topics[i] (k NULL when the engine could not
 * answer: a connection down or lost meanwhile, the server freed), in one round trip per engine
 * connection (Redis: a script that reads the retained key and XLEN of each; NATS: two JetStream
 * requests per topic, from the link's worker thread).  topics are read during the call.  0;
 * WSK_ERR_STATE (see above), WSK_ERR_IO (an engine connection is down: done does not run),
 * WSK_ERR_INVAL (a pattern, a derived topic, n out of range, done NULL), WSK_ERR_NOMEM. */
typedef struct wsk_topic_kept {
    int retained;     /* 1 when the engine keeps a retained message of the topic */
    uint64_t history; /* messages of the topic's history in the engine (0 without history) */
} wsk_topic_kept;
WSK_API int wsk_server_kept_read(wsk_server *srv, const char *const *topics, const size_t *lens,
                                 size_t n, void (*done)(void *arg, const wsk_topic_kept *k),
                                 void *arg);

/* ---------------------------------------------------------------------------------------------
 * Server groups: every core in one process.  A group is n event loops, each run by its own
 * thread, whose servers (one per loop, usually all listening on one port with reuse_port, so
 * the kernel spreads connections) share their topics: a publish on any member reaches
 * subscribers on every member.  Handlers run on the thread that owns the socket; what a
 * handler keeps per thread (user data, caches) is reached through its loop or server
 * (wsk_server_user of each member may differ).  Members that serve TLS with the same
 * certificate chain and client CA share one TLS configuration (made by the first of them added,
 * freed with the last): one set of session ticket keys and one session ID cache, so a client
 * resumes its session on whichever thread the kernel gives its next connection.
 *
 * Threads: everything on a socket, server or loop of a group is called from that loop's
 * thread only (from its handlers, or from fn of wsk_group_call), as without a group.  From any
 * thread: wsk_group_call, wsk_group_shutdown, wsk_group_size.  From the thread that made the
 * group, before wsk_group_run or after it returned: wsk_group_loop, wsk_group_add,
 * wsk_group_free (wsk_group_loop also from any thread while the group lives).
 *
 * Publishing in a group (wsk_publish, wsk_server_publish, wsk_server_publish_counted on a
 * member): the local subscribers get the message at once, as without a group; the other loops
 * that have subscribers of the topic (by name or by a matching pattern) get it once the
 * publishing loop's turn ends, in publish order per publishing loop, each socket exactly once,
 * never the publishing socket unless publish_to_self.  A publish from the end of a loop turn
 * (say, from a drain handler) goes with that turn's batch.  A subscription gets no publish of
 * another loop made before it, even one still on its way to its loop (the publishes that cross
 * loops are numbered group-wide; a subscription skips those numbered before it): when the
 * application orders its publishes and subscriptions (under one lock, say), a socket gets
 * exactly the publishes made after it subscribed.
 * Counts in a group (the return value of a publish, wsk_server_subscribers, wsk_server_reaches,
 * wsk_server_topics on a member) are the whole group's: the local part is exact; another
 * loop's part is its subscribers as that loop last counted them, so it is exact when no
 * socket subscribes, unsubscribes or closes on another loop while the publish runs.  Under such
 * a race a socket that subscribed on another loop just before the publish may miss the
 * message, one that left may still be counted, and a socket of another loop subscribed both
 * by name and by a matching pattern counts once per subscription (it still gets the message
 * once).  wsk_server_each_topic is the group's too (each topic once, its subscribers summed
 * over the loops, as each last counted them); wsk_server_each_subscriber stays local: sockets
 * belong to their loop's thread.
 * Bridge: wsk_server_bridge on one member (before wsk_group_run) bridges the whole group:
 * topics subscribed on any loop are carried, messages from other nodes reach every loop,
 * publishes on any loop are forwarded once.  wsk_server_bridged on any member says the
 * bridging member's state, and wsk_server_publish_counted on any member gets the engine's
 * count (done runs on the publishing member's loop).
 */
/* A server group: n event loops, each run by its own thread, whose servers share their topics
 * (a publish on any member reaches subscribers on every member).  Handlers run on the thread
 * that owns the socket. */
typedef struct wsk_group wsk_group;

/* n >= 1 loops; loop 0 is `ev0` when not NULL (pass EV_DEFAULT when loop 0 must watch child
 * processes: ev_child needs libev's default loop), every other loop is ev_loop_new(0).
 * Nothing runs yet.  NULL on allocation failure (or n 0).  The caller owns the group:
 * wsk_group_free; `ev0` stays the caller's. */
WSK_API wsk_group *wsk_group_new(unsigned n, struct ev_loop *ev0);
WSK_API unsigned wsk_group_size(const wsk_group *g);
/* Loop i's wsk_loop (owned by the group; NULL when i >= size). */
WSK_API wsk_loop *wsk_group_loop(wsk_group *g, unsigned i);
/* Makes srv (created with wsk_server_new on wsk_group_loop(g, i), one server per loop at most)
 * a member: before wsk_group_run, and before any socket subscribes.  A TLS server with no socket
 * yet takes the TLS configuration of a member with the same certificate chain and client CA
 * (see "Server groups").  Free the members (with wsk_server_free) only after wsk_group_run
 * returned.  0, WSK_ERR_INVAL (srv is not on a loop of g) or WSK_ERR_STATE (loop i has a member
 * already, or the group runs). */
WSK_API int wsk_group_add(wsk_group *g, wsk_server *srv);
/* Runs loops 1..n-1 on new threads and loop 0 on the calling thread; returns when every loop
 * has returned from ev_run (all their watchers stopped: servers shut down), threads joined.
 * A loop without a member server returns at once.  0; WSK_ERR_STATE when the group runs or
 * ran already; WSK_ERR_NOMEM when a thread could not be made (the loops already started are
 * shut down and joined). */
WSK_API int wsk_group_run(wsk_group *g);
/* From any thread: calls fn(arg, loop) on loop i's thread soon (one ev_async wake-up);
 * i == WSK_GROUP_ALL calls it on every loop.  arg stays the caller's.  Calls still waiting when
 * their loop has ended are not run (freed when wsk_group_run returns).  0, WSK_ERR_INVAL (i out
 * of range), WSK_ERR_NOMEM (then nothing was queued), or WSK_ERR_STATE once wsk_group_run has
 * returned (fn is not run and nothing is kept; the same for what a member's loop would carry
 * to another loop then, such as a publish). */
#define WSK_GROUP_ALL ((unsigned)-1)
WSK_API int wsk_group_call(wsk_group *g, unsigned i, void (*fn)(void *arg, wsk_loop *loop),
                           void *arg);
/* wsk_group_call for an arg that the call owns (a reference, a heap copy): drop(arg) runs
 * instead of fn for each loop where fn will not run, so that exactly one of the two runs per
 * loop called: a call still waiting when its loop ended is dropped on the thread that called
 * wsk_group_run, as it returns; one refused (WSK_ERR_STATE) or not queued (WSK_ERR_NOMEM) on the
 * calling thread, before this returns.  WSK_ERR_INVAL (fn or drop NULL, i out of range): neither
 * runs, arg stays the caller's. */
WSK_API int wsk_group_call_or_drop(wsk_group *g, unsigned i, void (*fn)(void *arg, wsk_loop *loop),
                                   void (*drop)(void *arg), void *arg);
/* From the thread of `from`, a loop of a running group (in a handler, or in fn of a call):
 * calls fn(arg, loop) on loop i's thread in order with what `from` publishes: it leaves for
 * loop i at the end of from's turn in the same batch as that turn's publishes (one wake-up),
 * and runs there after the publishes made on `from` before this call and before those made
 * after it (wsk_group_call goes at once, and may overtake them).  So a program that answers
 * one socket of another loop between two publishes has its sockets see the three in the
 * order it made them.  i may be from's own index (fn then runs at the end of this turn).
 * arg stays the caller's; a call whose loop has ended is not run (for an arg the call owns, see
 * wsk_group_call_ordered_or_drop).  0, WSK_ERR_INVAL (from not a group's loop, fn NULL or i
 * out of range), WSK_ERR_NOMEM (nothing queued) or WSK_ERR_STATE (wsk_group_run has
 * returned). */
WSK_API int wsk_group_call_ordered(wsk_loop *from, unsigned i,
                                   void (*fn)(void *arg, wsk_loop *loop), void *arg);
/* wsk_group_call_ordered for an arg that the call owns (a heap copy, a reference): exactly one
 * of fn(arg, loop) and drop(arg) runs.  drop runs instead of fn when loop i ended before the
 * call reached it (on the thread that called wsk_group_run, as it returns), or, before this
 * returns, when the call is refused (WSK_ERR_STATE) or not queued (WSK_ERR_NOMEM).
 * WSK_ERR_INVAL (from not a group's loop, fn or drop NULL, i out of range): neither runs, arg
 * stays the caller's. */
WSK_API int wsk_group_call_ordered_or_drop(wsk_loop *from, unsigned i,
                                           void (*fn)(void *arg, wsk_loop *loop),
                                           void (*drop)(void *arg), void *arg);
/* From any thread (not from a signal handler: from an ev_signal watcher, say): every member
 * starts wsk_server_shutdown(code, reason, grace) on its own loop; once a member's sockets are
 * gone its loop ends (ev_break, whatever else still watches there: a bridge's engine
 * connection, signal watchers), so wsk_group_run returns when every member drained.  reason:
 * NUL-terminated or NULL, copied (cut to 123 bytes).  Once per group: later calls do nothing. */
WSK_API void wsk_group_shutdown(wsk_group *g, unsigned code, const char *reason, double grace);
/* After a shutdown: the sockets that still had unsent data when it ended them, summed over the
 * members (wsk_server_shutdown's `dropped`). */
WSK_API size_t wsk_group_dropped(const wsk_group *g);
/* Frees the group and the loops it made: after wsk_group_run returned and the members were
 * freed (ev0 stays the caller's).  NULL: nothing. */
WSK_API void wsk_group_free(wsk_group *g);
/* How a group's connections reach its members (wsk_group_set_accept):
 * WSK_ACCEPT_REUSEPORT: every member listens on the same address with reuse_port and the kernel
 *   picks the member of each connection (a hash of its addresses and ports: even over many
 *   connections, uneven over a few); a new group's mode, as members that all listen expect.
 * WSK_ACCEPT_ROUND_ROBIN: member 0 alone listens (listen on it only; SO_REUSEPORT is not
 *   needed) and hands each socket it accepts to the next member in turn (itself included), whose
 *   loop adopts it as if it had accepted it: that member's max_connections, TLS handshake,
 *   handlers and metrics (`accepted` counts on the adopting member).  Exact spread, at the cost
 *   of one cross-loop call per connection.  A member that shut down, or is at its
 *   max_connections, is skipped; member 0 stops accepting while every member is full and looks
 *   again every second.  A socket that reaches a member that became full or shut down on the
 *   way, or whose loop ended first, is closed and counted (wsk_group_handoffs_failed) and logged
 *   once.
 * Which spreads load better (scripts/bench-threads --accept, README "Every core"): round-robin
 * gives each member exactly its share at any count; the kernel's hash is even only on average
 * (7 and 1 of 8 connections over 2 threads, the busiest of 4 threads 1.2 times its share of 64
 * or 256), and each thread's CPU follows its connections.  A hand-off cost no measurable rate
 * or server CPU in a connect-handshake-close loop (0.98 and 1.02 times reuseport's).  Few,
 * long-lived WebSocket connections gain more from the exact spread: wsserve --threads uses
 * WSK_ACCEPT_ROUND_ROBIN unless told otherwise; a new group keeps WSK_ACCEPT_REUSEPORT, what
 * members that each listen expect. */
#define WSK_ACCEPT_REUSEPORT   0u
#define WSK_ACCEPT_ROUND_ROBIN 1u
/* Before wsk_group_run, from the thread that made the group: the mode above.  0,
 * WSK_ERR_INVAL (not a mode) or WSK_ERR_STATE (the group runs or ran). */
WSK_API int wsk_group_set_accept(wsk_group *g, unsigned mode);
/* The group's mode (WSK_ACCEPT_REUSEPORT or WSK_ACCEPT_ROUND_ROBIN), from any thread. */
WSK_API unsigned wsk_group_accept(const wsk_group *g);
/* From any thread: the sockets closed because their hand-off to another member failed
 * (WSK_ACCEPT_ROUND_ROBIN, wsk_group_set_affinity), so far. */
WSK_API size_t wsk_group_handoffs_failed(const wsk_group *g);
/* Connection affinity: which member should own a connection, from its upgrade request.  Runs
 * on the thread of the member that accepted the connection (any member: it must be safe to
 * call from every loop's thread at once, and should be a pure function of the request), once
 * a plain connection's upgrade request has been read and parsed, before any handler; thread is
 * that member's index.  req is valid during the call only (wsk_request_path,
 * wsk_request_query_param, wsk_request_header ...).  Returns the index of the owning member,
 * or a negative value (or `thread`) to keep the connection where it is. */
typedef int (*wsk_affinity_fn)(void *user, const wsk_request *req, unsigned thread);
/* Before wsk_group_run, from the thread that made the group: fn (NULL: none, the default)
 * decides the owner of each plain connection.  A connection fn gives to another member leaves
 * with its fd and every byte read so far (the request and any frames pipelined behind it); the
 * owner's loop adopts it and handles the request as if it had read it: its max_connections,
 * upgrade handler, open and message handlers, metrics (`accepted` stays counted on the member
 * that accepted it; the handshake time runs from that accept).  Handed once: the owner does
 * not ask fn again.  A connection stays where it was accepted when it is TLS (its session
 * belongs to that thread's mbedTLS context), when it had a plain request answered and the reply
 * is still queued, when the owner is full or shutting down, or memory is short.  One that left
 * but could not be adopted (the owner filled up or shut down meanwhile, its loop ended) is
 * closed, counted (wsk_group_handoffs_failed) and logged.  Why: members of one chat room on one
 * loop publish to their room without crossing loops (wsserve --chat --rooms, README "Every
 * core").  0, or WSK_ERR_STATE (the group runs or ran). */
WSK_API int wsk_group_set_affinity(wsk_group *g, wsk_affinity_fn fn, void *user);
/* The group srv belongs to, and its index there in *index (may be NULL); NULL / 0 for a
 * server of no group. */
WSK_API wsk_group *wsk_server_group(const wsk_server *srv, unsigned *index);

/* ---------------------------------------------------------------------------------------------
 * Metrics: counters a server keeps on its loop (plain increments, no locks, no allocation), read
 * with wsk_server_stats and written in Prometheus's text format by wsk_stats_format.  Counters
 * only grow, from the server's creation; gauges are read at the call.
 */
/* Why a connection did not become a WebSocket (wsk_stats.refused). */
enum wsk_refusal {
    WSK_REFUSED_BAD_REQUEST = 0, /* 400: malformed HTTP or an invalid upgrade request */
    WSK_REFUSED_VERSION,         /* 426: a WebSocket version other than 13 */
    WSK_REFUSED_HEADER_SIZE,     /* 431: the request head over max_header */
    WSK_REFUSED_HTTP_OTHER,      /* another status the library answered (405, 411, 413, ...) */
    WSK_REFUSED_TIMEOUT,         /* no complete request head within handshake_timeout */
    WSK_REFUSED_TLS,             /* the TLS handshake failed (a client that leaves before
                                  * sending a byte, like a port probe, is not counted) */
    WSK_REFUSED_TLS_CERT,        /* the client's certificate was missing or did not verify */
    WSK_REFUSED_UNAUTHORIZED,    /* the upgrade handler answered 401 (wsserve: the token) */
    WSK_REFUSED_FORBIDDEN,       /* the upgrade handler answered 403 (wsserve: the Origin) */
    WSK_REFUSED_LIMIT,           /* the upgrade handler answered 503 (wsserve: --max-forks) */
    WSK_REFUSED_HANDLER,         /* the upgrade handler answered another status */
    WSK_REFUSED_COUNT
};
/* Close codes counted one by one: 1000 + i for i < 16; the last slot counts every other code
 * (3000-4999 and anything else). */
#define WSK_STATS_CLOSE_CODES 17
/* Received message sizes: bucket i counts messages of at most 64 * 4^i bytes (64 B ... 16 MiB),
 * the last one the larger ones. */
#define WSK_STATS_SIZE_BUCKETS 11
/* Handshake durations, from accept to the 101 (TLS included): bucket i counts those of at most
 * 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 or 10000 ms, the last one the longer ones
 * (measured on a monotonic clock in microseconds, not the loop's once-per-turn clock). */
#define WSK_STATS_HANDSHAKE_BUCKETS 12

/* A server's metrics; later versions only add fields at the end.  The arrays by type are [0] text
 * and [1] binary; control frames [0] close, [1] ping, [2] pong.  Message counts and bytes are of
 * payloads as the application sees them (before compression, after decompression); a publish counts
 * one message sent per socket it was queued for. */
typedef struct wsk_stats {
    size_t size; /* sizeof(wsk_stats) of the library that filled it */
    /* Gauges, read at the call. */
    uint64_t sockets;       /* connections in any phase (HTTP, open, closing) */
    uint64_t open;          /* open WebSocket connections */
    uint64_t queued_bytes;  /* bytes in every socket's send queue */
    uint64_t topics;        /* topics with a subscriber */
    uint64_t subscriptions; /* (socket, topic) pairs */
    int bridged;            /* 1 when the server has a bridge: the bridge_ fields are filled */
    unsigned bridge_links, bridge_links_up; /* engine connections, and those up now */
    /* As wsk_bridge_stats: forwarded, failed, received from other nodes, outages. */
    uint64_t bridge_forwarded, bridge_failed, bridge_received, bridge_outages;
    /* Counters. */
    uint64_t accepted;                   /* TCP connections accepted */
    uint64_t upgraded;                   /* handshakes completed (101 sent) */
    uint64_t refused[WSK_REFUSED_COUNT]; /* by enum wsk_refusal */
    uint64_t tls_handshakes; /* TLS handshakes completed (tls_resumed of them resumed one) */
    uint64_t messages_in[2], bytes_in[2];
    uint64_t messages_out[2], bytes_out[2];
    uint64_t control_in[3], control_out[3];
    uint64_t inflate[2]; /* compressed payload bytes received [0], and what they inflated to [1] */
    uint64_t deflate[2]; /* payload bytes compressed to send [0] (a publish shared by many sockets
                            once), and what they became [1] */
    uint64_t close_sent[WSK_STATS_CLOSE_CODES], close_received[WSK_STATS_CLOSE_CODES];
    uint64_t backpressure; /* messages queued behind unread data (a send returned -1) */
    uint64_t dropped;      /* messages dropped at the backpressure limit */
    uint64_t slow_closes;  /* sockets closed with 1008 at the limit (close_on_backpressure) */
    /* Valid wsk_publish and wsk_server_publish calls (also to a topic nobody subscribed to),
     * and messages from other nodes of the bridge. */
    uint64_t publishes;
    uint64_t deliveries;                               /* sockets those publishes were queued for */
    uint64_t size_buckets[WSK_STATS_SIZE_BUCKETS + 1]; /* received messages by size (above) */
    uint64_t handshake_buckets[WSK_STATS_HANDSHAKE_BUCKETS + 1]; /* handshakes by duration */
    uint64_t handshake_ms;                                       /* their total, milliseconds */
    uint64_t tls_resumed;  /* TLS handshakes that resumed a session (ticket or session ID) */
    uint64_t handshake_us; /* the handshakes' total, microseconds (handshake_ms rounded down) */
    /* With max_connections open the server stops accepting (new connections wait in the
     * kernel's listen backlog, unanswered) rather than refusing: the times it did so, and a
     * gauge, 1 while it accepts nothing now (at the limit, or out of file descriptors). */
    uint64_t accept_limit_pauses;
    uint64_t accept_paused;
    /* As wsk_bridge_stats (with a bridge): own messages come back, foreign ones, second
     * copies dropped, and other nodes' subscriptions the forwarded publishes reached. */
    uint64_t bridge_echoes, bridge_foreign, bridge_copies, bridge_remote;
    /* In a server group that hands connections between members (WSK_ACCEPT_ROUND_ROBIN,
     * wsk_group_set_affinity): the sockets accepted and closed because their hand-off failed
     * (wsk_group_handoffs_failed), the whole group's, reported by member 0 (0 on the others,
     * and without a group), so a sum over the members counts each once. */
    uint64_t handoffs_failed;
} wsk_stats;

/* Copies the server's metrics into the caller's *st of `size` bytes (pass sizeof(wsk_stats)):
 * the first min(size, this library's sizeof(wsk_stats)) bytes are written, and st->size says
 * how many, so a program built against another version reads only the fields both know.
 * Walks the server's sockets for the gauges.  0, or WSK_ERR_INVAL for st NULL or a size that
 * does not hold the size field. */
WSK_API int wsk_server_stats(const wsk_server *srv, wsk_stats *st, size_t size);
/* The sum of wsk_server_stats over the members of a server group, from any thread: each loop
 * copies its member's figures every second (and once more when its shutdown drained), so
 * while the group runs they are up to a second old; before wsk_group_run they are zero.
 * topics is the group's count (as wsk_server_topics), bridged and the bridge_ fields are the
 * bridging member's, handoffs_failed is read at the call; everything else is summed.  Same contract
 * as wsk_server_stats for st and size. */
WSK_API int wsk_group_stats(wsk_group *g, wsk_stats *st, size_t size);
/* Writes *st in the Prometheus text exposition format, version 0.0.4 (HELP and TYPE lines,
 * wsk_ names, _total counters, bytes and seconds) into buf[0..cap), NUL-terminated and cut to
 * cap - 1 like snprintf (buf may be NULL when cap is 0).  Returns the length of the whole text,
 * without the NUL: call again with a larger buffer when it is cap or more; WSK_ERR_INVAL when
 * st was not filled by this library's wsk_server_stats (st->size differs). */
WSK_API long wsk_stats_format(const wsk_stats *st, char *buf, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * The library's own rules, for programs built on it: the same code the data path runs.  None
 * keeps state; inputs are only read during the call.
 */

/* 1 when p[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF; the rule text messages and close reasons must follow), else 0. */
WSK_API int wsk_utf8_valid(const void *p, size_t n);
/* The length of the longest prefix of p[0..n) made of whole, valid UTF-8 characters: n when
 * p is valid, else the offset of the character that is broken or cut short. */
WSK_API size_t wsk_utf8_valid_prefix(const void *p, size_t n);

/* 1 when `code` may be sent in a close frame (RFC 6455 7.4): 1000-1003, 1007-1014 and
 * 3000-4999; 0 for the rest (1005, 1006 and 1015 only report local conditions). */
WSK_API int wsk_close_code_valid(unsigned code);

/* Base64 (RFC 4648 section 4, with padding).  Encoding writes 4 * ceil(n / 3) characters and a
 * NUL to out, which needs WSK_BASE64_SIZE(n) bytes, and returns their number (without the NUL).
 * Decoding accepts only padded base64 (n a multiple of 4, no whitespace); out needs n / 4 * 3
 * bytes; returns the decoded length, or WSK_ERR_INVAL. */
#define WSK_BASE64_SIZE(n) (((n) + 2) / 3 * 4 + 1)
WSK_API size_t wsk_base64_encode(const void *in, size_t n, char *out);
WSK_API long wsk_base64_decode(const char *in, size_t n, void *out);

#ifdef __cplusplus
}
#endif
#endif
