/* The dashboard's files (docs/architecture.md#the-dashboard). The folder is opened once
 * at start; every file is opened beneath it (openat2 RESOLVE_BENEATH where the kernel has
 * it), after the path's segments were checked: none empty, ".", ".." or hidden, none
 * holding a "/" or "\" once percent-decoded. */
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "api/api-guard.h"
#include "api/api-internal.h"
#include "api/api-web.h"
#include "base/log.h"

#ifndef MP_SOURCE_ROOT
#define MP_SOURCE_ROOT "."
#endif

/* Hashed by the build (web/vite.config.ts names them [name]-[hash].ext): never change. */
#define WEB_ASSETS_DIR "assets"
#define CACHE_IMMUTABLE "public, max-age=31536000, immutable"

static const char no_dashboard_html[] =
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>MecaPy</title></head><body>\n"
        "<h1>MecaPy is running; its dashboard is not built</h1>\n"
        "<p>The server found no dashboard files. Build them with <code>make build</code> (it runs "
        "<code>npm ci</code> and <code>vite build</code> into <code>web/dist</code>), or point the "
        "server at a built folder with <code>--web-dir DIR</code> (<code>MECAPY_WEB_DIR</code>).</p>\n"
        "<p>The API works without it: <a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>, "
        "<a href=\"/healthz\">/healthz</a>, and the <code>mecapy</code> command line.</p>\n"
        "</body></html>\n";

static int open_dir_with_index(const char *path) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;

        if (fd < 0)
                return -errno;
        if (fstatat(fd, "index.html", &st, 0) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return -ENOENT;
        }
        return fd;
}

int mp_api_web_open(const struct mp_config *config, int *ret_fd, char *ret_path, size_t path_size,
                    struct mp_error *err) {
        char exe[PATH_MAX], cand[3][PATH_MAX + 32];
        ssize_t n;
        int fd;

        if (config->web_dir) {
                fd = open_dir_with_index(config->web_dir);
                if (fd < 0)
                        return mp_error_set(err, -fd, 400, "config",
                                            "--web-dir %s: %s (it must be the folder `vite build` wrote, "
                                            "holding index.html; `make build` writes web/dist)",
                                            config->web_dir, fd == -ENOENT ? "no index.html there or no such folder" : strerror(-fd));
                snprintf(ret_path, path_size, "%s", config->web_dir);
                *ret_fd = fd;
                return 0;
        }
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        exe[n > 0 ? n : 0] = 0;
        char *slash = strrchr(exe, '/');
        if (slash)
                *slash = 0;
        snprintf(cand[0], sizeof(cand[0]), "%s/../web/dist", exe); /* build/mecapy */
        snprintf(cand[1], sizeof(cand[1]), "%s/web", exe);         /* installed side by side */
        snprintf(cand[2], sizeof(cand[2]), "%s/web/dist", MP_SOURCE_ROOT);
        for (size_t i = 0; i < ELEMENTSOF(cand); i++) {
                if ((i < 2 && !exe[0]) || (fd = open_dir_with_index(cand[i])) < 0)
                        continue;
                char *real = realpath(cand[i], NULL);
                snprintf(ret_path, path_size, "%s", real ? real : cand[i]);
                free(real);
                *ret_fd = fd;
                return 0;
        }
        *ret_fd = -1;
        ret_path[0] = 0;
        return 0;
}

static const char *content_type_of(const char *name) {
        static const struct {
                const char *ext, *type;
        } types[] = {
                { ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
                { ".mjs", "text/javascript; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
                { ".json", "application/json" }, { ".map", "application/json" },
                { ".svg", "image/svg+xml" }, { ".png", "image/png" }, { ".ico", "image/x-icon" },
                { ".webp", "image/webp" }, { ".woff2", "font/woff2" }, { ".woff", "font/woff" },
                { ".txt", "text/plain; charset=utf-8" }, { ".wasm", "application/wasm" },
        };
        const char *dot = strrchr(name, '.');
        for (size_t i = 0; dot && i < ELEMENTSOF(types); i++)
                if (!strcasecmp(dot, types[i].ext))
                        return types[i].type;
        return "application/octet-stream";
}

/* Open rel beneath dirfd, following no link. */
static int open_beneath(int dirfd, const char *rel) {
        struct open_how how = {
                .flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
        if (fd < 0 && errno == ENOSYS)
                fd = openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        return fd < 0 ? -errno : (int) fd;
}

/* Does the request accept gzip? "gzip" (or "x-gzip") among Accept-Encoding's codings,
 * not with q=0. */
static bool accepts_gzip(struct MHD_Connection *conn) {
        const char *ae = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding");
        char buf[256], *save = NULL;

        if (!ae || strlen(ae) >= sizeof(buf))
                return false;
        snprintf(buf, sizeof(buf), "%s", ae);
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                t += strspn(t, " \t");
                size_t n = strcspn(t, " \t;");
                if ((n == 4 && !strncasecmp(t, "gzip", 4)) || (n == 6 && !strncasecmp(t, "x-gzip", 6))) {
                        const char *q = strstr(t + n, "q=");
                        return !q || strtod(q + 2, NULL) > 0;
                }
        }
        return false;
}

static enum MHD_Result send_file(struct mp_route_ctx *c, int fd, const struct stat *st, const char *name,
                                 bool immutable, bool gzipped) {
        const char *type = content_type_of(name);
        struct MHD_Response *resp = MHD_create_response_from_fd((uint64_t) st->st_size, fd);
        enum MHD_Result r;

        if (!resp) {
                close(fd);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", type);
        mp_api_add_headers(c->conn, resp, !strncmp(type, "text/html", 9) ? MP_CSP_INDEX : MP_CSP_API);
        if (gzipped)
                MHD_add_response_header(resp, "Content-Encoding", "gzip");
        if (gzipped || immutable)
                MHD_add_response_header(resp, "Vary", "Accept-Encoding");
        if (immutable) {
                /* The common headers say no-store; a hashed asset is the one exception. */
                MHD_del_response_header(resp, "Cache-Control", "no-store");
                MHD_add_response_header(resp, "Cache-Control", CACHE_IMMUTABLE);
        }
        r = MHD_queue_response(c->conn, 200, resp);
        MHD_destroy_response(resp);
        return r;
}

/* index.html with a fresh CSP nonce in each answer: the build wrote NONCE_MARK where
 * the nonce goes (web/vite.config.ts, html.cspNonce), and the CSP names the same nonce
 * in style-src, so the one style element the page adds (CodeMirror's, which carries
 * the nonce) is allowed and no other inline style is. The page is small: read whole. */
#define NONCE_MARK "__MP_CSP_NONCE__"
#define INDEX_MAX (256 * 1024)

static char *index_with_nonce(int fd, const char *nonce, size_t *ret_len) {
        _cleanup_free_ char *raw = malloc(INDEX_MAX + 1);
        size_t n = 0, marks = 0, mark_len = strlen(NONCE_MARK), nonce_len = strlen(nonce);
        ssize_t k = 0;

        if (!raw)
                return NULL;
        while (n < INDEX_MAX && (k = read(fd, raw + n, INDEX_MAX - n)) > 0)
                n += (size_t) k;
        if (k < 0 || n >= INDEX_MAX)
                return NULL;
        raw[n] = 0;
        for (const char *p = raw; (p = strstr(p, NONCE_MARK)); p += mark_len)
                marks++;
        char *out = malloc(n + marks * nonce_len + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = raw, *m; *p; p = m + mark_len) {
                if (!(m = strstr(p, NONCE_MARK))) {
                        o = stpcpy(o, p);
                        break;
                }
                memcpy(o, p, (size_t) (m - p));
                o = stpcpy(o + (m - p), nonce);
        }
        *o = 0;
        *ret_len = (size_t) (o - out);
        return out;
}

static enum MHD_Result send_index(struct mp_route_ctx *c) {
        unsigned char bytes[16];
        char nonce[2 * sizeof(bytes) + 1], csp[sizeof(MP_CSP_INDEX) + sizeof(nonce) + 16];
        _cleanup_free_ char *html = NULL;
        struct MHD_Response *resp;
        struct stat st;
        size_t len = 0;
        int fd = open_beneath(c->api->web_fd, "index.html");
        enum MHD_Result r;

        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && getrandom(bytes, sizeof(bytes), 0) == (ssize_t) sizeof(bytes)) {
                for (size_t i = 0; i < sizeof(bytes); i++)
                        snprintf(nonce + 2 * i, 3, "%02x", bytes[i]);
                html = index_with_nonce(fd, nonce, &len);
        }
        if (fd >= 0)
                close(fd);
        if (!html)
                return mp_api_send_error(c->conn, 503, "unavailable",
                                         "the dashboard folder %s lost its index.html (or it is over %d bytes)",
                                         c->api->web_dir, INDEX_MAX);
        resp = MHD_create_response_from_buffer(len, html, MHD_RESPMEM_MUST_FREE);
        if (!resp)
                return MHD_NO;
        html = NULL; /* the response owns it now */
        snprintf(csp, sizeof(csp), MP_CSP_INDEX_HEAD " 'nonce-%s'" MP_CSP_INDEX_TAIL, nonce);
        MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
        /* index.html names the hashed files of this build: always fetched afresh (the
         * common headers say no-store), and its nonce is this answer's alone. */
        mp_api_add_headers(c->conn, resp, csp);
        r = MHD_queue_response(c->conn, 200, resp);
        MHD_destroy_response(resp);
        return r;
}

/* The first segments of the app's pages (web/src/App.svelte routes the rest). */
static const char *const app_sections[] = { "functions", "tasks", "account", "sign-in", "workflows", "workflow-runs", "studies",
                                            "company", "audit" };

static bool is_app_address(const struct mp_route_ctx *c) {
        for (size_t i = 0; i < ELEMENTSOF(app_sections); i++)
                if (!strcmp(c->seg[0], app_sections[i]))
                        return !strchr(c->seg[c->nseg - 1], '.');
        return false;
}

enum MHD_Result mp_api_web_serve(struct mp_route_ctx *c) {
        char rel[MP_MAX_URL_LEN + 1] = "";
        size_t len = 0;
        struct stat st;
        int fd;

        if (c->api->web_fd < 0) {
                if (c->nseg == 0 || (c->nseg == 1 && !strcmp(c->seg[0], "index.html")))
                        return mp_api_send_bytes(c->conn, 200, "text/html; charset=utf-8", no_dashboard_html,
                                                 sizeof(no_dashboard_html) - 1);
                return mp_api_send_error(c->conn, 404, "not_found", "no route %.200s (the dashboard is not built)",
                                         c->path);
        }
        if (c->nseg <= 0)
                return c->nseg == 0 ? send_index(c) : mp_api_send_error(c->conn, 404, "not_found", "no such file");
        for (int i = 0; i < c->nseg; i++) {
                const char *s = c->seg[i];
                if (!s[0] || s[0] == '.' || strpbrk(s, "/\\") || len + strlen(s) + 2 > sizeof(rel))
                        return mp_api_send_error(c->conn, 404, "not_found", "no such file");
                len += (size_t) snprintf(rel + len, sizeof(rel) - len, "%s%s", i ? "/" : "", s);
        }
        bool asset = c->nseg > 1 && !strcmp(c->seg[0], WEB_ASSETS_DIR);
        /* A hashed asset's compressed twin (NAME.gz, written by the build) when the
         * browser takes gzip. */
        if (asset && len + 3 < sizeof(rel) && accepts_gzip(c->conn)) {
                memcpy(rel + len, ".gz", 4);
                fd = open_beneath(c->api->web_fd, rel);
                rel[len] = 0;
                if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
                        return send_file(c, fd, &st, c->seg[c->nseg - 1], true, true);
                if (fd >= 0)
                        close(fd);
        }
        fd = open_beneath(c->api->web_fd, rel);
        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
                return send_file(c, fd, &st, c->seg[c->nseg - 1], asset, false);
        if (fd >= 0)
                close(fd);
        /* An address of the app (/functions/{id}, /tasks/{id}): the page routes it.
         * Anything else is a 404, as it was before there was a dashboard. */
        if (is_app_address(c))
                return send_index(c);
        return mp_api_send_error(c->conn, 404, "not_found", "no such file");
}
