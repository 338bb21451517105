/* Error strings. */
#include "wskit.h"

const char *wsk_strerror(int err)
{
    switch (err) {
    case WSK_OK: return "success";
    case WSK_ERR_PROTOCOL: return "protocol error";
    case WSK_ERR_UTF8: return "invalid UTF-8";
    case WSK_ERR_TOO_BIG: return "message too big";
    case WSK_ERR_POLICY: return "policy violation";
    case WSK_ERR_DEFLATE: return "invalid compressed data";
    case WSK_ERR_HTTP: return "malformed HTTP";
    case WSK_ERR_HEADER_SIZE: return "HTTP header block too large";
    case WSK_ERR_HANDSHAKE: return "handshake failed";
    case WSK_ERR_URL: return "invalid URL";
    case WSK_ERR_NOMEM: return "out of memory";
    case WSK_ERR_INVAL: return "invalid argument";
    case WSK_ERR_STATE: return "invalid state";
    case WSK_ERR_IO: return "I/O error";
    case WSK_ERR_CLOSED: return "connection closed";
    case WSK_ERR_TIMEOUT: return "timed out";
    case WSK_ERR_DNS: return "name resolution failed";
    case WSK_ERR_CONNECT: return "connection failed";
    case WSK_ERR_TLS: return "TLS error";
    case WSK_ERR_CERT: return "certificate verification failed";
    default: return "unknown error";
    }
}
