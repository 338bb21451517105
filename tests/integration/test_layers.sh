#!/usr/bin/env bash
# Each rule in one place, checked on the sources: mbedTLS behind the TLS files, a transport that
# knows nothing of clients or servers, and no second definition of the helpers the library
# exports (UTF-8, close codes, base64, percent-decoding, HTTP body framing).
# tests/run: not under valgrind (reads the sources)
# tests/run: not with threads (reads the sources)
set -u
cd "$(dirname "$0")/../.."
n=0
check() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi; }

# Files that include mbedTLS headers (wsbench's TLS is lib/io_tls.c too); io_tls_records.c
# reads the session's secrets from mbedTLS's context to seal the records after the handshake.
mbed=$(grep -l '#include <mbedtls/' lib/*.[ch] cmd/*.[ch] | sort | tr '\n' ' ')
check "mbedTLS headers only in lib/crypto.c, lib/io_tls.c and lib/io_tls_records.c (found: $mbed)" \
    '[ "$mbed" = "lib/crypto.c lib/io_tls.c lib/io_tls_records.c " ]'
ipsec=$(grep -l '#include <intel-ipsec-mb.h>' lib/*.[ch] cmd/*.[ch] | tr '\n' ' ')
check "ipsec-mb only in lib/io_tls_records.c (found: $ipsec)" \
    '[ "$ipsec" = "lib/io_tls_records.c " ]'

# TCP_NODELAY in one place: wsk_tcp_connect and wsk_tcp_accept (wsbench's sockets too).
nodelay=$(grep -ln 'TCP_NODELAY' lib/*.c cmd/*.c | tr '\n' ' ')
check "TCP_NODELAY only in lib/io_tcp.c (found: $nodelay)" '[ "$nodelay" = "lib/io_tcp.c " ]'

calls=$(grep -nE 'wsk_(client|server)_[a-z_]+ *\(' lib/io_tls.c lib/io_tls_records.c lib/io_tcp.c | tr '\n' ' ')
check "the transport calls no client or server function (found: $calls)" '[ -z "$calls" ]'

# A definition starts at the beginning of a line: "type name(" or "static type name(".
defs() { grep -nE "^[a-z].*[^a-z_]($1) *\\(" "${@:2}" | grep -v ';$'; }
check "one UTF-8 validator (lib/parse_utf8.c)" \
    '[ -z "$(defs "[a-z_]*utf8_(valid|char|check)[a-z_]*" lib/*.c cmd/*.c | grep -v ^lib/parse_utf8.c:)" ]'
check "one close-code rule (lib/msg_control.c)" \
    '[ -z "$(defs "[a-z_]*close_code_(valid|ok)" lib/*.c cmd/*.c | grep -v ^lib/msg_control.c:)" ]'
check "one base64 (lib/crypto.c)" \
    '[ -z "$(defs "[a-z_]*base64[a-z_]*" lib/*.c cmd/*.c | grep -v ^lib/crypto.c:)" ]'
check "one percent-decoder (lib/parse_url.c)" \
    '[ -z "$(defs "[a-z_]*(pct|percent|url)_decode|hexval" lib/*.c cmd/*.c | grep -v ^lib/parse_url.c:)" ]'
check "one Content-Length and chunked decoding (lib/parse_http.c)" \
    '[ -z "$(defs "[a-z_]*(chunked_body|chunked_decode|content_length)" lib/*.c cmd/*.c | grep -v ^lib/parse_http.c:)" ]'
