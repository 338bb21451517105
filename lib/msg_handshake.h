/* The WebSocket opening handshake (RFC 6455 section 4) over parsed HTTP heads (internal).
 *
 * Nothing here does I/O or allocates, except wsk_handshake_client_key, which reads getrandom(2).
 * Pointers returned point into the parsed head, or are static strings. */
#ifndef WSK_MSG_HANDSHAKE_H
#define WSK_MSG_HANDSHAKE_H

#include <stddef.h>

#include "parse_http.h"

/* wsk_handshake_check: an ordinary HTTP request, not a WebSocket upgrade. */
#define WSK_HS_PLAIN 1

/* Sec-WebSocket-Accept for a key (RFC 6455 4.2.2): base64(SHA-1(key + GUID)).  out gets 28
 * characters and a NUL. */
void wsk_accept_key(const char *key, size_t key_len, char out[29]);

/* Server: classifies a parsed request.  Returns 0 for a valid WebSocket upgrade and points
 * *key and *key_len at its Sec-WebSocket-Key (inside req's buffer); WSK_HS_PLAIN for an ordinary
 * HTTP request with no Upgrade header naming websocket; otherwise an HTTP status with *why a static
 * one-line reason: 400 (not GET, HTTP/1.0, no Host or more than one, Connection without the
 * upgrade token, missing key, a key that is not base64 of 16 bytes, duplicate Sec-WebSocket-Key),
 * 426 (Sec-WebSocket-Version missing or not 13; answer with "Sec-WebSocket-Version: 13"). */
int wsk_handshake_check(const wsk_http_request *req, const char **key, size_t *key_len,
                        const char **why);

/* Client: a fresh Sec-WebSocket-Key (base64 of 16 bytes from getrandom(2)), 24 characters and a
 * NUL.  0 or WSK_ERR_IO. */
int wsk_handshake_client_key(char out[25]);

/* Client: writes the upgrade request into out[0..cap), NUL-terminated: "GET path HTTP/1.1"
 * (path "/" when NULL or empty, and prefixed with "/" when it lacks one, as a query-only wsk_url
 * path does), Host (with :port unless port is 0 or the default for `secure`; a host holding ':'
 * in brackets), Upgrade, Connection, Sec-WebSocket-Key, Sec-WebSocket-Version: 13, then
 * Sec-WebSocket-Protocol (the nprotos names comma-separated, each a token) if any, Origin if
 * non-NULL, Authorization: Basic base64(userinfo) if userinfo is non-NULL, Sec-WebSocket-Extensions
 * if non-NULL, then each of the nextra raw "Name: value" lines in `extra` (a user header with the
 * same name as a generated one, e.g. Host or Origin, replaces the generated one), and the empty
 * line.  Returns the length (without the NUL), or WSK_ERR_INVAL when it does not fit, a header
 * line holds CR or LF, the path holds a space or control character, an extra line is not
 * "token: value", or a protocol name is not a token.  Only reads its string arguments. */
int wsk_handshake_client_request(char *out, size_t cap, const char *host, unsigned port, int secure,
                                 const char *path, const char *key, const char *const *protos,
                                 size_t nprotos, const char *origin, const char *userinfo,
                                 const char *extensions, const char *const *extra, size_t nextra);

/* Client: checks a parsed response to our request (RFC 6455 4.1): status 101, Upgrade
 * websocket, Connection upgrade, Sec-WebSocket-Accept matching the NUL-terminated key, a
 * Sec-WebSocket-Protocol that is one of protos (or none), no Sec-WebSocket-Extensions unless
 * extensions_offered (the caller then validates what was chosen).  Returns 0, or
 * WSK_ERR_HANDSHAKE with *why a static one-line reason.  *proto and *proto_len (either may be NULL)
 * get the chosen subprotocol (inside res's buffer), or NULL and 0. */
int wsk_handshake_client_verify(const wsk_http_response *res, const char *key,
                                const char *const *protos, size_t nprotos, int extensions_offered,
                                const char **proto, size_t *proto_len, const char **why);

#endif
