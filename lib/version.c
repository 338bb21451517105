/* wsk_versions: the versions of wskit and of the libraries it runs on, as those libraries report
 * them at run time where they can (a program may load other builds than it was compiled with;
 * libdeflate and ISA-L say only what their headers said at build time).
 * Only version calls here: each dependency's real use stays in its own file (mbedTLS's version
 * comes from io_tls.c, the only file besides crypto.c that includes mbedTLS; ipsec-mb's from
 * io_tls_records.c). */
#include "io_tls.h"
#include "io_tls_records.h"
#include "wskit.h"

#include <ev.h>
#include <isa-l.h>
#include <libdeflate.h>
#include <stdio.h>
#include <zlib.h>

long wsk_versions(char *buf, size_t cap)
{
    if (!buf && cap) return WSK_ERR_INVAL;
    char tls[18];
    wsk_tls_version(tls);
    int n = snprintf(
        buf, cap,
        "wskit %s, libev %d.%d, zlib %s, libdeflate %s, ISA-L %d.%d.%d, mbedTLS %s, ipsec-mb %s",
        WSK_VERSION, ev_version_major(), ev_version_minor(), zlibVersion(),
        LIBDEFLATE_VERSION_STRING, ISAL_MAJOR_VERSION, ISAL_MINOR_VERSION, ISAL_PATCH_VERSION, tls,
        tls_rec_version());
    return n < 0 ? WSK_ERR_INVAL : n;
}
