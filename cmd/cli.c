/* Helpers shared by the commands: see cli.h. */
#include "cli.h"

#include "wskit.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ----- options -------------------------------------------------------------------------------- */

int cli_next_option_in(int argc, char **argv, const cli_option *const *tables,
                       const cli_option **opt, const char **arg)
{
    /* getopt keeps its position in globals, so the tables are rebuilt the same way each call.
     * Options may follow operands (GNU style: "wscat ws://host -v"). */
    struct option longs[CLI_MAX_OPTIONS + 1];
    const cli_option *from[CLI_MAX_OPTIONS];
    char shorts[CLI_MAX_OPTIONS * 2 + 1];
    size_t n = 0, k = 0;
    for (; *tables; ++tables) {
        for (const cli_option *o = *tables; n < CLI_MAX_OPTIONS && o->name; ++o, ++n) {
            int optional = o->arg && !strncmp(o->arg, "[=", 2);
            from[n] = o;
            longs[n] = (struct option){o->name,
                                       optional ? optional_argument
                                       : o->arg ? required_argument
                                                : no_argument,
                                       NULL, o->key};
            if (o->key > 0 && o->key < 256) {
                shorts[k++] = (char)o->key;
                if (o->arg) shorts[k++] = ':';
                if (optional) shorts[k++] = ':';
            }
        }
    }
    longs[n] = (struct option){0, 0, 0, 0};
    shorts[k] = '\0';
    int idx = -1;
    int c = getopt_long(argc, argv, shorts, longs, &idx);
    *arg = c > 0 && c != '?' ? optarg : NULL;
    *opt = NULL;
    if (c > 0 && c != '?') {
        if (idx >= 0) {
            *opt = from[idx];
        } else { /* a short option: getopt does not say which entry it was */
            for (size_t i = 0; i < n && !*opt; ++i)
                if (from[i]->key == c) *opt = from[i];
        }
    }
    return c;
}

int cli_next_option(int argc, char **argv, const cli_option *opts, const char **arg)
{
    const cli_option *tables[] = {opts, NULL}, *opt;
    return cli_next_option_in(argc, argv, tables, &opt, arg);
}

void cli_print_options(FILE *f, const cli_option *opts)
{
    for (; opts->name; ++opts) {
        if (!opts->help) continue;
        char left[64];
        int has_short = opts->key > 0 && opts->key < 256;
        snprintf(left, sizeof left, "%c%c%c --%s%s%s", has_short ? '-' : ' ',
                 has_short ? opts->key : ' ', has_short ? ',' : ' ', opts->name,
                 opts->arg && strncmp(opts->arg, "[=", 2) ? " " : "", opts->arg ? opts->arg : "");
        if (strlen(left) > 27)
            fprintf(f, "  %s\n  %-27s %s\n", left, "", opts->help);
        else
            fprintf(f, "  %-27s %s\n", left, opts->help);
    }
}

void cli_warn(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    va_end(ap);
    exit(CLI_EXIT_USAGE);
}

void cli_print_version(FILE *f, const char *prog)
{
    char v[256];
    wsk_versions(v, sizeof v);
    fprintf(f, "%s %s (%s)\n", prog, WSK_VERSION, v);
}

/* ----- TLS client options -------------------------------------------------------------------- */

int cli_tls_option(int key, const char *arg, cli_tls *tls)
{
    switch (key) {
    case CLI_OPT_NO_CHECK:
    case 'k': tls->no_check = 1; return 1;
    case CLI_OPT_CA: tls->ca = arg; return 1;
    case CLI_OPT_CERT: tls->cert = arg; return 1;
    case CLI_OPT_KEY: tls->key = arg; return 1;
    case CLI_OPT_PASSPHRASE: tls->passphrase = arg; return 1;
    default: return 0;
    }
}

void cli_tls_check(const char *prog, const cli_tls *tls)
{
    /* --cert alone: the key is in the certificate file (the library reads it from there). */
    if (tls->key && !tls->cert) cli_usage_error(prog, "--key needs --cert");
}

void cli_tls_client_opts(const cli_tls *tls, wsk_client_opts *co)
{
    co->tls_ca = tls->ca;
    co->tls_cert = tls->cert;
    co->tls_key = tls->key;
    co->tls_key_password = tls->passphrase;
    co->tls_insecure = tls->no_check;
}

/* ----- option values -------------------------------------------------------------------------- */

int cli_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    if (!s || !isdigit((unsigned char)*s)) return -1;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

/* Case-insensitive equality with a lowercase word. */
static int word_is(const char *s, const char *word)
{
    for (; *s && *word; ++s, ++word)
        if (tolower((unsigned char)*s) != *word) return 0;
    return *s == *word;
}

int cli_parse_duration(const char *s, double *out)
{
    char *end;
    if (!s || !(isdigit((unsigned char)*s) || *s == '.')) return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !isfinite(v) || v < 0) return -1;
    if (!*end || word_is(end, "s"))
        *out = v;
    else if (word_is(end, "ms"))
        *out = v / 1000;
    else if (word_is(end, "m") || word_is(end, "min"))
        *out = v * 60;
    else if (word_is(end, "h"))
        *out = v * 3600;
    else
        return -1;
    return 0;
}

int cli_parse_size(const char *s, size_t *out)
{
    char *end;
    if (!s || !isdigit((unsigned char)*s)) return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    int shift = 0;
    switch (tolower((unsigned char)*end)) {
    case '\0': break;
    case 'k': shift = 10; break;
    case 'm': shift = 20; break;
    case 'g': shift = 30; break;
    default: return -1;
    }
    if (*end) {
        ++end;
        if (word_is(end, "ib") || word_is(end, "b")) end += strlen(end);
        if (*end) return -1;
    }
    if (v > (SIZE_MAX >> shift)) return -1;
    *out = (size_t)(v << shift);
    return 0;
}

long cli_read_secret(const char *prog, const char *opt, const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: --%s %s: %s\n", prog, opt, path, strerror(errno));
        return -1;
    }
    char line[4098];
    int ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    size_t n = ok ? strcspn(line, "\r\n") : 0;
    if (n && n < cap && n < sizeof line - 2) memcpy(out, line, n);
    memset(line, 0, sizeof line);
    if (!n || n >= cap || n >= sizeof line - 2) {
        fprintf(stderr, "%s: --%s %s: the first line must hold the secret (1 to %zu bytes)\n", prog,
                opt, path, (cap < sizeof line - 2 ? cap : sizeof line - 2) - 1);
        return -1;
    }
    out[n] = 0;
    return (long)n;
}

int cli_parse_hostport(const char *s, char *host, size_t cap, unsigned *port)
{
    const char *p = s, *colon;
    size_t hlen = 0;
    unsigned long v;
    if (!s || !cap) return -1;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':') return -1;
        hlen = (size_t)(close - s - 1);
        ++s;
        p = close + 2;
    } else if ((colon = strrchr(s, ':'))) {
        if (memchr(s, ':', (size_t)(colon - s))) return -1; /* an IPv6 address needs brackets */
        hlen = (size_t)(colon - s);
        p = colon + 1;
    }
    if (hlen >= cap || cli_parse_ulong(p, 0, 65535, &v) < 0) return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    *port = (unsigned)v;
    return 0;
}

/* ----- colours -------------------------------------------------------------------------------- */

int cli_color_wanted(FILE *f, int disabled)
{
    const char *no = getenv("NO_COLOR"), *term = getenv("TERM");
    if (disabled || (no && *no) || (term && !strcmp(term, "dumb"))) return 0;
    return isatty(fileno(f));
}

const char *cli_color(int on, enum cli_color c)
{
    static const char *const seq[] = {
        [CLI_RESET] = "\033[0m", [CLI_BOLD] = "\033[1m",     [CLI_DIM] = "\033[2m",
        [CLI_RED] = "\033[31m",  [CLI_GREEN] = "\033[32m",   [CLI_YELLOW] = "\033[33m",
        [CLI_BLUE] = "\033[34m", [CLI_MAGENTA] = "\033[35m", [CLI_CYAN] = "\033[36m",
    };
    return on && (unsigned)c < sizeof seq / sizeof *seq ? seq[c] : "";
}

/* ----- formats -------------------------------------------------------------------------------- */

void cli_hexdump(FILE *f, const void *p, size_t n, const char *indent)
{
    const unsigned char *b = p;
    for (size_t off = 0; off < n; off += 16) {
        fprintf(f, "%s%08zx ", indent ? indent : "", off);
        for (size_t i = 0; i < 16; ++i) {
            if (i == 8) fputc(' ', f);
            if (off + i < n)
                fprintf(f, " %02x", b[off + i]);
            else
                fputs("   ", f);
        }
        fputs("  |", f);
        for (size_t i = 0; i < 16 && off + i < n; ++i)
            fputc(b[off + i] >= 0x20 && b[off + i] < 0x7f ? b[off + i] : '.', f);
        fputs("|\n", f);
    }
}

void cli_hex(FILE *f, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; ++i) fprintf(f, "%02x", b[i]);
}

const char *cli_clock(double t, char *buf, size_t cap)
{
    time_t secs = (time_t)t;
    struct tm tm;
    localtime_r(&secs, &tm);
    snprintf(buf, cap, "%02d:%02d:%02d.%03d", tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)((t - (double)secs) * 1000) % 1000);
    return buf;
}
