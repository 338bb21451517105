#!/usr/bin/env bash
# make install with PREFIX and DESTDIR: binaries, libraries with their soname links, the
# header, wskit.pc and the man pages land where they should, and a program builds against them.
# tests/run: not under valgrind (make install only)
# tests/run: not with threads (make install only)
set -u
cd "$(dirname "$0")/../.."
n=0 failed=0
check() { n=$((n + 1)); if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; failed=1; fi; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The default build, whatever variant (make asan) runs this test: drop inherited make variables.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u O -u CC -u CFLAGS -u LDFLAGS make -s install DESTDIR="$tmp/root" PREFIX=/opt/wskit >"$tmp/log" 2>&1
rc=$? # check() runs other commands first: its condition reads the status saved here
check "make install succeeds" '[ $rc -eq 0 ] || { sed "s/^/# /" "$tmp/log"; false; }'
r="$tmp/root/opt/wskit"
check "commands installed" '[ -x "$r/bin/wsserve" ]'
check "static and shared library with soname links" \
    '[ -f "$r/lib/libwskit.a" ] && [ -L "$r/lib/libwskit.so" ] && [ -L "$r/lib/libwskit.so.0" ]'
check "soname is libwskit.so.0" 'objdump -p "$r/lib/libwskit.so" | grep -q "SONAME *libwskit.so.0"'
check "only wsk_ symbols exported" \
    '! nm -D --defined-only "$r/lib/libwskit.so" | awk "{print \$3}" | grep -v "^wsk_" | grep -v "^_" | grep -q .'
check "header installed" '[ -f "$r/include/wskit.h" ]'
check "pkg-config file names the prefix" 'grep -q "^prefix=/opt/wskit" "$r/lib/pkgconfig/wskit.pc"'
check "man pages installed" '[ -f "$r/share/man/man1/wsserve.1" ]'
cat >"$tmp/app.c" <<'C'
#include <wskit.h>
#include <stdio.h>
int main(void) { puts(wsk_strerror(WSK_ERR_UTF8)); return 0; }
C
check "a program builds and runs against the installed library" \
    'cc -I"$r/include" "$tmp/app.c" -L"$r/lib" -lwskit -lev -lmbedtls -lmbedx509 -lmbedcrypto -lz -lcjson -o "$tmp/app" &&
     LD_LIBRARY_PATH="$r/lib" "$tmp/app" | grep -q UTF-8'
# The example in the README builds as it stands.
awk '/^```c$/{on=1; next} /^```$/{on=0} on' README.md >"$tmp/readme.c"
check "the README's example builds against the installed library" \
    '[ -s "$tmp/readme.c" ] && cc -std=c11 -Wall -Werror -I"$r/include" "$tmp/readme.c" -L"$r/lib" -lwskit \
        -lev -lmbedtls -lmbedx509 -lmbedcrypto -lz -lcjson -o "$tmp/readme"'
exit $failed
