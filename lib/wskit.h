/* wskit: WebSocket toolkit (RFC 6455, RFC 7692) on libev.  This header is the whole public API.
 *
 * Conventions
 *  - Every name starts with wsk_; every type is opaque unless its fields are documented here.
 *  - Functions that can fail return a negative wsk_error (see wsk_strerror).
 *  - Buffers passed in are only read during the call unless stated; buffers handed to
 *    handlers are valid until the handler returns.
 *  - One thread per loop: nothing here is thread-safe, and nothing here has global mutable
 *    state; all shared state lives in a wsk_loop.
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
    WSK_ERR_PROTOCOL = -1,   /* 1002: framing or state error */
    WSK_ERR_UTF8 = -2,       /* 1007: invalid UTF-8 in a text message or close reason */
    WSK_ERR_TOO_BIG = -3,    /* 1009: message larger than the configured maximum */
    WSK_ERR_POLICY = -4,     /* 1008: refused by policy */
    WSK_ERR_DEFLATE = -5,    /* 1007: compressed data that does not inflate */
    /* HTTP and handshake. */
    WSK_ERR_HTTP = -10,      /* malformed HTTP message (400) */
    WSK_ERR_HEADER_SIZE = -11, /* header block over its cap (431) */
    WSK_ERR_HANDSHAKE = -12, /* the handshake was refused or is invalid */
    WSK_ERR_URL = -13,       /* malformed or unsupported URL */
    /* Local conditions. */
    WSK_ERR_NOMEM = -20,
    WSK_ERR_INVAL = -21,     /* invalid argument */
    WSK_ERR_STATE = -22,     /* operation not valid in the current state */
    WSK_ERR_IO = -23,        /* read/write failed (errno has details where it applies) */
    WSK_ERR_CLOSED = -24,    /* the connection is closed */
    WSK_ERR_TIMEOUT = -25,
    WSK_ERR_DNS = -26,
    WSK_ERR_CONNECT = -27,
    WSK_ERR_TLS = -28,
    WSK_ERR_CERT = -29,      /* the peer's certificate did not verify */
};

/* A static, one-line description of an error code. */
WSK_API const char *wsk_strerror(int err);

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
    WSK_CLOSE_NO_STATUS = 1005,   /* never sent: reported when a close frame had no code */
    WSK_CLOSE_ABNORMAL = 1006,    /* never sent: reported when TCP closed without a close frame */
    WSK_CLOSE_INVALID_DATA = 1007,
    WSK_CLOSE_POLICY = 1008,
    WSK_CLOSE_TOO_BIG = 1009,
    WSK_CLOSE_EXTENSION = 1010,
    WSK_CLOSE_INTERNAL = 1011,
};

/* @API@ */

#ifdef __cplusplus
}
#endif
#endif
