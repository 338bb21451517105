/* wsserve --static DIR: the files of a directory for plain GETs (serve_exec.h).
 *
 * The path is percent-decoded once (wsk_url_decode), then checked segment by segment: "..", "." and
 * empty segments, NUL and backslashes are refused before the file system sees the name, so neither
 * "../" nor "%2e%2e/" climbs out.  A symbolic link inside DIR is followed only when its target
 * (realpath) is still inside DIR. */
#include "parse_url.h"
#include "serve.h"
#include "serve_exec.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define STATIC_MAX (64u << 20) /* larger files are refused (413): the body is built in memory */

static const struct {
    const char *ext, *type;
} types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
};

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (!strcasecmp(dot + 1, types[i].ext)) return types[i].type;
    return "application/octet-stream";
}

/* The decoded path, without its leading '/', into out: 0, or -1 for a path that may not reach
 * the file system (too long, NUL, backslash, a ".", ".." or empty segment). */
static int clean_path(const char *p, size_t n, char *out, size_t cap)
{
    size_t dlen = wsk_url_decode(p + 1, n - 1, 0, out, cap); /* the library's one decoder */
    if (dlen >= cap || memchr(out, 0, dlen) || memchr(out, '\\', dlen)) return -1;
    /* Segment checks on the decoded name: "%2e%2e" is ".." here. */
    for (char *seg = out; *seg;) {
        char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if ((len == 0 && end) || (len == 1 && seg[0] == '.') ||
            (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return -1;
        if (!end) break;
        seg = end + 1;
    }
    return 0;
}

/* Resolves path's symbolic links into real: 1 when the result is root or inside it, where a
 * link out of DIR must not lead. */
static int resolve_inside(const char *root, const char *path, char *real)
{
    size_t rl = strlen(root);
    return realpath(path, real) &&
           (!strcmp(real, root) || (!strncmp(real, root, rl) && real[rl] == '/'));
}

static int list_dir(const char *full, const char *url, size_t url_len, wsk_response *res)
{
    DIR *d = opendir(full);
    if (!d) return serve_text(res, 403, "forbidden\n");
    char line[1024];
    /* The title is the path as requested: only characters that need no escaping in HTML. */
    for (size_t i = 0; i < url_len; i++)
        if (strchr("<>&\"'", url[i])) url_len = 0;
    int n = snprintf(line, sizeof line, "<!doctype html><title>%.*s</title><ul>\n",
                     (int)(url_len < 512 ? url_len : 512), url);
    wsk_response_append_body(res, line, (size_t)n);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        /* Names that need escaping in HTML or a URL are left out rather than mangled. */
        if (strpbrk(e->d_name, "<>&\"'%?# ")) continue;
        n = snprintf(line, sizeof line, "<li><a href=\"%s\">%s</a>\n", e->d_name, e->d_name);
        wsk_response_append_body(res, line, (size_t)n);
    }
    closedir(d);
    wsk_response_add_header(res, "Content-Type", "text/html; charset=utf-8");
    return 200;
}

int serve_static(const char *dir, int listing, const wsk_request *req, wsk_response *res)
{
    if (!dir) return 0;
    size_t ml, pl;
    const char *m = wsk_request_method(req, &ml);
    const char *path = wsk_request_path(req, &pl);
    int head = ml == 4 && !memcmp(m, "HEAD", 4);
    if (!head && !(ml == 3 && !memcmp(m, "GET", 3))) {
        wsk_response_add_header(res, "Allow", "GET, HEAD");
        return serve_text(res, 405, "method not allowed\n");
    }
    char rel[PATH_MAX], root[PATH_MAX], want[2 * PATH_MAX], real[PATH_MAX];
    if (!pl || path[0] != '/' || clean_path(path, pl, rel, sizeof rel) < 0)
        return serve_text(res, 404, "not found\n");
    if (!realpath(dir, root)) return serve_text(res, 404, "not found\n");
    snprintf(want, sizeof want, "%s/%s", root, rel);
    if (!resolve_inside(root, want, real)) return serve_text(res, 404, "not found\n");
    struct stat st;
    if (stat(real, &st) < 0) return serve_text(res, 404, "not found\n");
    if (S_ISDIR(st.st_mode)) {
        if (pl && path[pl - 1] != '/') { /* relative links in the page need the slash */
            char loc[PATH_MAX + 2];
            snprintf(loc, sizeof loc, "%.*s/", (int)(pl < PATH_MAX ? pl : PATH_MAX), path);
            wsk_response_add_header(res, "Location", loc);
            return serve_text(res, 301, "moved\n");
        }
        char index[PATH_MAX + 16];
        size_t len = strlen(real);
        if (len + 12 > PATH_MAX) return serve_text(res, 404, "not found\n");
        memcpy(index, real, len);
        memcpy(index + len, "/index.html", 12);
        /* index.html may be a symbolic link too: it is resolved and checked like the path. */
        char index_real[PATH_MAX];
        if (!resolve_inside(root, index, index_real) || stat(index_real, &st) < 0 ||
            !S_ISREG(st.st_mode)) {
            if (!listing) return serve_text(res, 403, "directory listing is off (--listing)\n");
            return list_dir(real, path, pl, res);
        }
        memcpy(real, index_real, strlen(index_real) + 1);
    }
    if (!S_ISREG(st.st_mode)) return serve_text(res, 404, "not found\n");
    if ((size_t)st.st_size > STATIC_MAX) return serve_text(res, 413, "file too large\n");
    FILE *f = fopen(real, "rb");
    if (!f) return serve_text(res, 403, "forbidden\n");
    wsk_response_add_header(res, "Content-Type", content_type(real));
    char buf[65536];
    size_t n;
    /* HEAD gets the same response: the library sends its headers without the body. */
    /* At most the size stat gave (and STATIC_MAX allowed): a file that grows meanwhile is cut. */
    for (size_t left = (size_t)st.st_size;
         left && (n = fread(buf, 1, left < sizeof buf ? left : sizeof buf, f)) > 0; left -= n)
        wsk_response_append_body(res, buf, n);
    fclose(f);
    return 200;
}
