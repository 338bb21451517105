/* Helpers shared by the commands in cmd/: option tables, option values (sizes, durations,
 * numbers, addresses), colours, a few output formats and the version line.  Nothing here knows
 * about WebSockets; each helper is small enough to read in one look. */
#ifndef WSK_CLI_H
#define WSK_CLI_H

#include <stddef.h>
#include <stdio.h>

/* The exit status of a usage error, for every command. */
#define CLI_EXIT_USAGE 1

/* ----- options -------------------------------------------------------------------------------- */

/* One command-line option.  A table ends with an entry whose name is NULL. */
typedef struct cli_option {
    const char *name; /* long name without "--" */
    int key;          /* the short option letter, or a value above 255 for a long-only option */
    const char *arg;  /* the argument's name in --help ("URL"), NULL for a flag; "[=NAME]" for
                       * an optional argument, given as --name=VALUE */
    const char *help; /* one line for --help; NULL leaves the option out of the help */
} cli_option;

#define CLI_MAX_OPTIONS 96

/* getopt_long(3) over a table: returns the key of the next option with its argument in *arg
 * (NULL for a flag), -1 once the options end (optind is the first operand), or '?' after
 * getopt has printed what was wrong on stderr. */
int cli_next_option(int argc, char **argv, const cli_option *opts, const char **arg);

/* The same over several tables (a NULL-terminated list), for a command whose parts each bring
 * their own options: *opt is the entry that matched (NULL when the return value is -1 or '?'),
 * so keys need not be unique across tables; long names and short letters must be. */
int cli_next_option_in(int argc, char **argv, const cli_option *const *tables,
                       const cli_option **opt, const char **arg);

/* Prints the table as aligned help lines: "  -c, --connect URL    Connect to URL". */
void cli_print_options(FILE *f, const cli_option *opts);

/* "prog: message" on stderr (printf-style; the newline is added). */
void cli_warn(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cli_warn, then "Try 'prog --help'." and exit(CLI_EXIT_USAGE). */
_Noreturn void cli_usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "prog VERSION (wsk_versions: wskit, libev, zlib, libdeflate, ISA-L, mbedTLS and
 * ipsec-mb)". */
void cli_print_version(FILE *f, const char *prog);

/* ----- TLS client options -------------------------------------------------------------------- */

/* Keys of the TLS options, above any command's own (which start at 256). */
enum {
    CLI_OPT_NO_CHECK = 0x7f00,
    CLI_OPT_CA,
    CLI_OPT_CERT,
    CLI_OPT_KEY,
    CLI_OPT_PASSPHRASE,
};

/* A client command's TLS settings; the strings point into argv. */
typedef struct cli_tls {
    const char *ca, *cert, *key, *passphrase;
    int no_check; /* --no-check, -k: the server's certificate is not verified */
} cli_tls;

/* The TLS entries of a client command's option table, after its own --no-check entry (whose
 * key is CLI_OPT_NO_CHECK, or 'n' where -n means nothing else). */
/* clang-format off */
#define CLI_TLS_OPTIONS                                                                            \
    {"insecure", 'k', NULL, "the same as --no-check (curl's name)"},                               \
    {"ca", CLI_OPT_CA, "FILE", "PEM CA bundle to verify the server with"},                         \
    {"cert", CLI_OPT_CERT, "FILE", "PEM client certificate"},                                      \
    {"key", CLI_OPT_KEY, "FILE", "PEM key of --cert (default: in the --cert file)"},                                             \
    {"passphrase", CLI_OPT_PASSPHRASE, "PW", "passphrase of --key"}
/* clang-format on */

/* Takes option `key` (with its argument) into *tls when it is one of CLI_TLS_OPTIONS or
 * CLI_OPT_NO_CHECK: returns 1 then, else 0 (a command's -n is its own to map). */
int cli_tls_option(int key, const char *arg, cli_tls *tls);

/* A usage error (exit) for --key without --cert; --cert alone names a file holding the key too. */
void cli_tls_check(const char *prog, const cli_tls *tls);

/* Copies *tls into the tls_ fields of *co; the strings stay tls's (argv's). */
struct wsk_client_opts;
void cli_tls_client_opts(const cli_tls *tls, struct wsk_client_opts *co);

/* ----- option values: 0 on success, -1 (and *out untouched) otherwise ------------------------- */

/* A decimal integer in [min, max]. */
int cli_parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out);

/* Seconds: "1.5", "250ms", "2s", "3m", "1h"; not negative. */
int cli_parse_duration(const char *s, double *out);

/* Bytes: "1024", "64K", "16M", "1G" (also "KB", "KiB", ...: all powers of 1024). */
int cli_parse_size(const char *s, size_t *out);

/* A listening address: "PORT", "HOST:PORT", "[IPV6]:PORT" or "*:PORT".  The host, without
 * brackets, goes to host[0..cap) ("" when only a port was given); the port must be 0..65535. */
int cli_parse_hostport(const char *s, char *host, size_t cap, unsigned *port);

/* The first line of the file at path (a secret kept out of argv): its bytes, without the line
 * end, NUL-terminated in out[0..cap).  Its length, or -1 after telling stderr why ("PROG: --OPT
 * PATH: ..."): the file cannot be read, or its first line is empty or longer than cap - 1.
 * The caller wipes out when done; the line's other copies are wiped here. */
long cli_read_secret(const char *prog, const char *opt, const char *path, char *out, size_t cap);

/* ----- colours -------------------------------------------------------------------------------- */

enum cli_color {
    CLI_RESET,
    CLI_BOLD,
    CLI_DIM,
    CLI_RED,
    CLI_GREEN,
    CLI_YELLOW,
    CLI_BLUE,
    CLI_MAGENTA,
    CLI_CYAN,
};

/* 1 when output to `f` should be coloured: not `disabled` (a --no-color option), NO_COLOR unset
 * or empty (https://no-color.org), TERM not "dumb", and f a terminal. */
int cli_color_wanted(FILE *f, int disabled);

/* The escape sequence that selects c, or "" when !on. */
const char *cli_color(int on, enum cli_color c);

/* ----- formats -------------------------------------------------------------------------------- */

/* A hex dump of p[0..n): 16 bytes a line, offset, bytes and their printable ASCII, each line
 * after `indent`. */
void cli_hexdump(FILE *f, const void *p, size_t n, const char *indent);

/* Lowercase hex digits of p[0..n) on one line, without a newline. */
void cli_hex(FILE *f, const void *p, size_t n);

/* The local time of day of t (seconds since the epoch) as "HH:MM:SS.mmm" in buf; returns buf. */
const char *cli_clock(double t, char *buf, size_t cap);

#endif
