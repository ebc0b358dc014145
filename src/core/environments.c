/* core/: per-function requirements (docs/functions.md#requirements,
 * docs/operations.md#environments).
 *
 * A version that declares requirements runs in an environment: the set of wheels they
 * resolve to, installed into a read-only layer folder. Nothing of anyone's code runs to
 * build one: wheels only (never a source distribution, whose build would run its
 * setup.py), from the operator's wheelhouse folders, by pip in a process with its own
 * user and network namespaces (no network at all).
 *
 *   resolve (at upload, in the request): pip download --only-binary=:all: --no-index
 *           --find-links WHEELHOUSE... of the requirements; the lock is every wheel it
 *           took, [{"name","version","sha256"}] sorted by name, and the environment's
 *           id the sha256 of the lock's canonical JSON: two versions whose requirements
 *           resolve to the same wheels share one environment (and one zygote).
 *   build (a background thread, queued -> building -> ready | failed): pip install
 *           --no-index --no-deps --require-hashes --target of the locked wheels, every
 *           file's hash checked against the lock, into LAYERS/.work/build-*, made
 *           read-only and renamed to LAYERS/<id>. --no-compile: no .pyc is written, so
 *           the layer is the wheels' files and pip's metadata only, the same bytes each
 *           time the same lock is built.
 *   index   (--package-index URL): pip itself never reaches a network. Before pip runs,
 *           the server fetches the page of each project named, PEP 691 JSON when the
 *           index serves it, else PEP 503 HTML (no redirect followed, pages and files
 *           bounded in size and time), and every wheel it lists with a sha256 (not
 *           yanked, unless pinned), checked, into LAYERS/.wheels, a wheelhouse
 *           like the operator's; a project pip then reports missing (a dependency) is
 *           fetched in turn and pip runs again, at most ENV_INDEX_ROUNDS times.
 *   archive (every node): the builder also stores the layer in the object store
 *           (environments/<id>.tar, its sha256 with the environment); a node that runs
 *           an environment whose layer it lacks brings it from there (see "layers in
 *           the object store" below).
 *
 * A resolution that fails (no wheel, a conflict, a hash that does not match) still
 * makes an environment, failed, with pip's log and its error lines, under an id that
 * hashes the requirements themselves ("unresolved"), so that the upload answers with a
 * state that says why. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/util.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"

#define ENV_LOG_MAX (64 * 1024)   /* bytes of pip's output kept as the build log */
#define ENV_ERROR_MAX 1500        /* bytes of its error lines kept as the error */
#define ENV_PIP_TIMEOUT_MS (300 * 1000)
#define ENV_ID_HEX 64
#define ENV_GC_GRACE_MS (3600 * 1000)
/* Package indexes: what the server fetches itself, bounded (docs/operations.md). */
#define ENV_INDEX_PAGE_MAX (4 << 20)          /* bytes of one project page */
#define ENV_INDEX_WHEEL_MAX (256LL << 20)     /* bytes of one wheel */
#define ENV_INDEX_FILES_MAX 64                /* wheels taken from one project page */
#define ENV_INDEX_ROUNDS 32                   /* projects discovered one pip run at a time */
#define ENV_INDEX_TIMEOUT_S 300L              /* one transfer */
/* Layers in the object store (environments/<id>.tar), for the nodes that did not build
 * them: an uncompressed tar held in memory while it is written or read. */
#define ENV_ARCHIVE_MAX (512LL << 20)

struct mp_envs {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool started, stop;
        json_t *todo; /* ids to build, in order */
        char layers[PATH_MAX];
        bool builds; /* --wheelhouse or --package-index: this node resolves and builds */
};

/* ---- requirements ---- */

static bool name_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
}

static bool alnum_char(char c) {
        return name_char(c) && c != '.' && c != '_' && c != '-';
}

static const char *skip_spaces(const char *p) {
        while (*p == ' ')
                p++;
        return p;
}

/* A project name (PEP 508: letters and digits, '.', '_', '-' inside): its end, NULL. */
static const char *read_name(const char *p) {
        const char *s = p;
        if (!alnum_char(*p))
                return NULL;
        while (name_char(*p))
                p++;
        return alnum_char(p[-1]) && p - s <= 100 ? p : NULL;
}

bool mp_core_requirement_ok(const char *s) {
        static const char *const ops[] = { "===", "==", "!=", "<=", ">=", "~=", "<", ">" };
        const char *p = s ? read_name(s) : NULL;

        if (!p || strlen(s) > 300)
                return false;
        if (*p == '[') { /* extras: [a,b] */
                do {
                        p = read_name(skip_spaces(p + 1));
                        if (!p)
                                return false;
                        p = skip_spaces(p);
                } while (*p == ',');
                if (*p++ != ']')
                        return false;
        }
        p = skip_spaces(p);
        /* version specifiers: op version [, op version]... */
        while (*p && *p != '-') {
                size_t k, n = 0;
                for (k = 0; k < ELEMENTSOF(ops); k++)
                        if (!strncmp(p, ops[k], strlen(ops[k])))
                                break;
                if (k == ELEMENTSOF(ops))
                        return false;
                p = skip_spaces(p + strlen(ops[k]));
                while (name_char(p[n]) || p[n] == '*' || p[n] == '+' || p[n] == '!')
                        n++;
                if (n == 0)
                        return false;
                p = skip_spaces(p + n);
                if (*p == ',')
                        p = skip_spaces(p + 1);
                else if (*p && *p != '-')
                        return false;
        }
        /* hashes the wheel must have: --hash=sha256:<64 hex>, after a space */
        while (*p) {
                if (p[-1] != ' ' || strncmp(p, "--hash=sha256:", 14))
                        return false;
                p += 14;
                if (strspn(p, "0123456789abcdef") != ENV_ID_HEX)
                        return false;
                p = skip_spaces(p + ENV_ID_HEX);
        }
        return true;
}

/* ---- files ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *f) {
        (void) st, (void) f;
        if (flag == FTW_DP)
                return rmdir(path) < 0 ? -errno : 0;
        return unlink(path) < 0 ? -errno : 0;
}

static void rm_tree(const char *path) {
        (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Directories r-x, files r-- (r-x when executable): the layer never changes. */
static int ro_one(const char *path, const struct stat *st, int flag, struct FTW *f) {
        (void) f;
        if (flag == FTW_SL)
                return 0;
        mode_t m = flag == FTW_DP || flag == FTW_D || (st->st_mode & 0111) ? 0555 : 0444;
        return chmod(path, m) < 0 ? -errno : 0;
}

static int rw_one(const char *path, const struct stat *st, int flag, struct FTW *f) {
        (void) st, (void) f;
        if (flag == FTW_D || flag == FTW_DP)
                (void) chmod(path, 0700);
        return 0;
}

static int write_text(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        return mp_write_all(fd, text, strlen(text));
}

static int sha256_file(const char *path, char hex[static 2 * crypto_hash_sha256_BYTES + 1]) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        crypto_hash_sha256_state st;
        unsigned char buf[65536], h[crypto_hash_sha256_BYTES];
        ssize_t n;

        if (fd < 0)
                return -errno;
        crypto_hash_sha256_init(&st);
        while ((n = read(fd, buf, sizeof(buf))) > 0)
                crypto_hash_sha256_update(&st, buf, (unsigned long long) n);
        if (n < 0)
                return -errno;
        crypto_hash_sha256_final(&st, h);
        sodium_bin2hex(hex, 2 * crypto_hash_sha256_BYTES + 1, h, sizeof(h));
        return 0;
}

/* ---- pip, without network ---- */

/* Replace every `from` in *s by `to` (the host's folders are not the user's to see). */
static void replace_all(char **s, const char *from, const char *to) {
        size_t fl = strlen(from), tl = strlen(to), n = 0;
        char *p, *out, *o;

        if (!*s || fl == 0)
                return;
        for (p = strstr(*s, from); p; p = strstr(p + fl, from))
                n++;
        if (n == 0 || !(out = malloc(strlen(*s) + n * tl + 1)))
                return;
        o = out;
        for (const char *q = *s; (p = strstr(q, from)); q = p + fl) {
                memcpy(o, q, (size_t) (p - q));
                o += p - q;
                memcpy(o, to, tl);
                o += tl;
                if (!strstr(p + fl, from)) {
                        strcpy(o, p + fl); /* sized above */
                        break;
                }
        }
        free(*s);
        *s = out;
}

/* Run argv[0] (an absolute path) in its own user and network namespaces (root: a
 * network namespace alone), stdin /dev/null, stdout and stderr into *ret_out (the first
 * ENV_LOG_MAX bytes, NUL-terminated). The exit status (0: success), or -errno when it
 * could not run. The child only makes system calls between fork and exec: this runs in
 * the threaded server. */
static int run_offline(char *const argv[], char **ret_out) {
        static char *const envp[] = { "PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=/nonexistent",
                                      "PIP_CONFIG_FILE=/dev/null", "PYTHONDONTWRITEBYTECODE=1",
                                      "PIP_NO_COLOR=1", NULL };
        static const char no_ns[] = "cannot make a build without network (user and network namespaces)\n";
        int pfd[2], status = 0;
        size_t len = 0;
        char *out = malloc(ENV_LOG_MAX + 1);
        pid_t pid;

        if (!out)
                return -ENOMEM;
        if (pipe2(pfd, O_CLOEXEC) < 0) {
                free(out);
                return -errno;
        }
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        pid = fork();
        if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                /* The server's threads block SIGINT and SIGTERM and ignore SIGPIPE: pip
                 * gets the defaults, and dies with the thread that started it. */
                if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0 ||
                    sigprocmask(SIG_SETMASK, &none, NULL) < 0 || signal(SIGPIPE, SIG_DFL) == SIG_ERR ||
                    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
                        _exit(126);
                if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0 && unshare(CLONE_NEWNET) < 0) {
                        (void) !write(2, no_ns, sizeof(no_ns) - 1);
                        _exit(126);
                }
                execve(argv[0], argv, envp);
                _exit(127);
        }
        int saved = errno;
        close(pfd[1]);
        if (devnull >= 0)
                close(devnull);
        if (pid < 0) {
                close(pfd[0]);
                free(out);
                return -saved;
        }
        int64_t deadline = mp_mono_ms() + ENV_PIP_TIMEOUT_MS;
        for (;;) {
                struct pollfd p = { .fd = pfd[0], .events = POLLIN };
                int64_t left = deadline - mp_mono_ms();
                if (left <= 0) {
                        kill(pid, SIGKILL);
                        break;
                }
                int n = poll(&p, 1, (int) MP_MIN(left, 1000));
                if (n < 0 && errno != EINTR)
                        break;
                if (n <= 0)
                        continue;
                char buf[4096];
                ssize_t k = read(pfd[0], buf, sizeof(buf));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                size_t take = MP_MIN((size_t) k, (size_t) ENV_LOG_MAX - len);
                memcpy(out + len, buf, take);
                len += take;
        }
        close(pfd[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        out[len] = 0;
        if (!mp_utf8_valid(out, len))
                for (size_t i = 0; i < len; i++)
                        if ((unsigned char) out[i] >= 0x80)
                                out[i] = '?';
        *ret_out = out;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* pip's error lines ("ERROR: ..." and the indented lines after them): what the user
 * reads first. */
static char *error_lines(const char *out) {
        char *e = calloc(1, ENV_ERROR_MAX + 1);
        size_t n = 0;
        bool in_error = false;

        if (!e)
                return NULL;
        for (const char *l = out; l && *l;) {
                const char *nl = strchr(l, '\n');
                size_t ll = nl ? (size_t) (nl - l) : strlen(l);
                if (!strncmp(l, "ERROR: ", 7))
                        in_error = true;
                else if (*l != ' ')
                        in_error = false;
                if (in_error && ll > 0 && n < ENV_ERROR_MAX)
                        n += (size_t) snprintf(e + n, ENV_ERROR_MAX + 1 - n, "%s%.*s", n ? "\n" : "",
                                               (int) ll, !strncmp(l, "ERROR: ", 7) ? l + 7 : l);
                l = nl ? nl + 1 : NULL;
        }
        if (n == 0)
                snprintf(e, ENV_ERROR_MAX + 1, "pip failed without an error line (see the log)");
        if (strstr(e, "Could not find a version that satisfies") && n < ENV_ERROR_MAX)
                snprintf(e + n, ENV_ERROR_MAX + 1 - n,
                         "\nOnly wheels from the server's wheelhouse or package index are installed; a source distribution is "
                         "never built: ask the operator for a wheel of it.");
        return e;
}

/* The pip command line: python -m pip VERB [fixed options] --find-links D... */
static char **pip_argv(struct mp_core *core, const char *const *args) {
        const char *wh = core->config->wheelhouse;
        size_t n = 0, k = 0;
        for (const char *p = wh; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
                n++;
        for (const char *const *a = args; *a; a++)
                n++;
        char **argv = calloc(2 * n + 8, sizeof(char *));
        if (!argv)
                return NULL;
        argv[k++] = strdup(core->config->python);
        argv[k++] = strdup("-m");
        argv[k++] = strdup("pip");
        for (const char *const *a = args; *a; a++)
                argv[k++] = strdup(*a);
        for (const char *p = wh; p && *p;) {
                const char *nl = strchr(p, '\n');
                argv[k++] = strdup("--find-links");
                argv[k++] = nl ? strndup(p, (size_t) (nl - p)) : strdup(p);
                p = nl ? nl + 1 : NULL;
        }
        if (core->config->package_index) {
                argv[k++] = strdup("--find-links");
                argv[k] = NULL;
                if (asprintf(&argv[k], "%s/.wheels", core->envs->layers) < 0)
                        argv[k] = NULL;
                k++;
        }
        for (size_t i = 0; i < k; i++)
                if (!argv[i]) {
                        for (size_t j = 0; j < k; j++)
                                free(argv[j]);
                        free(argv);
                        return NULL;
                }
        return argv;
}

static void argv_free(char **argv) {
        for (size_t i = 0; argv && argv[i]; i++)
                free(argv[i]);
        free(argv);
}

/* Run pip; its output (host folders hidden) into *ret_out. The exit status or -errno. */
static int pip_run(struct mp_core *core, const char *const *args, const char *work, char **ret_out) {
        char **argv = pip_argv(core, args);
        char *out = NULL;
        int r;

        if (!argv)
                return -ENOMEM;
        r = run_offline(argv, &out);
        argv_free(argv);
        if (r < 0)
                return r;
        for (const char *p = core->config->wheelhouse; p && *p;) {
                const char *nl = strchr(p, '\n');
                _cleanup_free_ char *dir = nl ? strndup(p, (size_t) (nl - p)) : strdup(p);
                if (dir)
                        replace_all(&out, dir, "<wheelhouse>");
                p = nl ? nl + 1 : NULL;
        }
        replace_all(&out, work, "<build>");
        replace_all(&out, core->envs->layers, "<layers>");
        *ret_out = out;
        return r;
}

/* A private folder under LAYERS/.work for one resolution or build. */
static int work_dir(struct mp_core *core, const char *kind, char *buf, size_t size) {
        char parent[PATH_MAX + 8];
        snprintf(parent, sizeof(parent), "%s/.work", core->envs->layers);
        if (mkdir(parent, 0700) < 0 && errno != EEXIST)
                return -errno;
        if ((size_t) snprintf(buf, size, "%s/%s-XXXXXX", parent, kind) >= size)
                return -ENAMETOOLONG;
        return mkdtemp(buf) ? 0 : -errno;
}

/* ---- package indexes (fetched by the server, never by pip) ---- */

struct sink {
        struct mp_buf *page; /* a project page, or */
        int fd;              /* a wheel being written */
        crypto_hash_sha256_state st;
        long long left;
};

static size_t on_data(char *p, size_t size, size_t n, void *userdata) {
        struct sink *k = userdata;
        size_t len = size * n;
        /* Past a bound the transfer stops, whatever the index announced. */
        if ((long long) len > k->left)
                return 0;
        k->left -= (long long) len;
        if (k->page)
                return mp_buf_append(k->page, p, len) < 0 ? 0 : len;
        crypto_hash_sha256_update(&k->st, (const unsigned char *) p, len);
        return mp_write_all(k->fd, p, len) < 0 ? 0 : len;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void) {
        /* Not thread-safe in libcurl 7.88: once, before this module's first transfer. */
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* GET url into the sink: no redirect followed, http and https only, bounded in size
 * and time; with accept, that Accept header, and the answer's Content-Type (its media
 * type, lower case) into ret_type. 0 or -EIO with a line in *flog. */
static int fetch(const char *url, const char *accept, struct sink *k, long long max, char *ret_type,
                 size_t type_size, struct mp_buf *flog) {
        long status = 0;
        pthread_once(&curl_once, curl_init_once);
        CURL *h = curl_easy_init();
        struct curl_slist *headers = NULL;
        CURLcode rc;
        char line[600];

        if (!h)
                return -ENOMEM;
        if (accept) {
                snprintf(line, sizeof(line), "Accept: %s", accept);
                if (!(headers = curl_slist_append(NULL, line))) {
                        curl_easy_cleanup(h);
                        return -ENOMEM;
                }
                curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        }
        k->left = max;
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_TIMEOUT, ENV_INDEX_TIMEOUT_S);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) max);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, k);
        rc = curl_easy_perform(h);
        if (rc == CURLE_OK)
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (rc == CURLE_OK && ret_type) {
                const char *type = NULL;
                size_t n = 0;
                curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &type);
                for (; type && type[n] && type[n] != ';' && type[n] != ' ' && n + 1 < type_size; n++)
                        ret_type[n] = (char) (type[n] >= 'A' && type[n] <= 'Z' ? type[n] + 32 : type[n]);
                ret_type[n] = 0;
        }
        curl_easy_cleanup(h);
        curl_slist_free_all(headers);
        if (rc == CURLE_OK && status == 200)
                return 0;
        snprintf(line, sizeof(line), "index: %.400s: %s\n", url,
                 rc != CURLE_OK ? (rc == CURLE_WRITE_ERROR || rc == CURLE_FILESIZE_EXCEEDED ? "too large"
                                                                                            : curl_easy_strerror(rc))
                 : status >= 300 && status < 400 ? "a redirect (not followed)" : "not found or refused");
        mp_buf_append_trunc(flog, line, strlen(line));
        return -EIO;
}

/* One wheel linked from a page: into LAYERS/.wheels/FILE when its sha256 is the
 * link's. A file already there with that hash is kept. */
static void fetch_wheel(const char *wheels, const char *url, const char *file, const char *want,
                        struct mp_buf *flog) {
        char path[PATH_MAX + 300], tmp[PATH_MAX + 32], hex[2 * crypto_hash_sha256_BYTES + 1], line[700];
        unsigned char h[crypto_hash_sha256_BYTES];
        struct sink k = { .page = NULL };

        snprintf(path, sizeof(path), "%s/%s", wheels, file);
        if (sha256_file(path, hex) == 0 && !strcmp(hex, want)) {
                (void) utimensat(AT_FDCWD, path, NULL, 0); /* used now: the collector's grace */
                return;
        }
        snprintf(tmp, sizeof(tmp), "%s/.fetch-XXXXXX", wheels);
        if ((k.fd = mkostemp(tmp, O_CLOEXEC)) < 0)
                return;
        crypto_hash_sha256_init(&k.st);
        int r = fetch(url, NULL, &k, ENV_INDEX_WHEEL_MAX, NULL, 0, flog);
        close(k.fd);
        crypto_hash_sha256_final(&k.st, h);
        sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
        if (r == 0 && strcmp(hex, want)) {
                snprintf(line, sizeof(line), "index: %.200s: its sha256 is not the index's, not taken\n", file);
                mp_buf_append_trunc(flog, line, strlen(line));
                r = -EBADMSG;
        }
        if (r < 0 || rename(tmp, path) < 0)
                unlink(tmp);
}

/* One file a project page lists (href: its URL, relative to the page; file: its name;
 * sha256: the index's hash of it): fetched into wheels when it is a wheel whose name
 * and hash are well formed and its URL http(s). True when it was tried. */
static bool take_file(const char *wheels, const char *page_url, const char *href, const char *file,
                      const char *sha256, struct mp_buf *flog) {
        size_t fl = file ? strlen(file) : 0;
        bool ok = sha256 && strlen(sha256) == 2 * crypto_hash_sha256_BYTES && fl > 4 && fl < 250 &&
                  !strcmp(file + fl - 4, ".whl") && file[0] != '.';
        for (size_t i = 0; ok && i < fl; i++)
                ok = name_char(file[i]) || file[i] == '+' || file[i] == '!';
        for (const char *x = ok ? sha256 : ""; ok && *x; x++)
                ok = (*x >= '0' && *x <= '9') || (*x >= 'a' && *x <= 'f');
        CURLU *u = ok ? curl_url() : NULL;
        char *abs = NULL;
        bool taken = false;
        if (u && curl_url_set(u, CURLUPART_URL, page_url, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_URL, href, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_URL, &abs, 0) == CURLUE_OK &&
            (!strncmp(abs, "http://", 7) || !strncmp(abs, "https://", 8))) {
                fetch_wheel(wheels, abs, file, sha256, flog);
                taken = true;
        }
        curl_free(abs);
        curl_url_cleanup(u);
        return taken;
}

/* The version a wheel's file name carries (NAME-VERSION-...), into buf. */
static void wheel_version(const char *file, char *buf, size_t size) {
        const char *dash = strchr(file, '-'), *dash2 = dash ? strchr(dash + 1, '-') : NULL;
        snprintf(buf, size, "%.*s", dash2 ? (int) (dash2 - dash - 1) : 0, dash2 ? dash + 1 : "");
}

/* A yanked file (PEP 592) is taken only when the requirements pin its version with ==
 * (pin: that version, or NULL). */
static bool yanked_but_pinned(const char *file, const char *pin) {
        char version[128];
        wheel_version(file, version, sizeof(version));
        return pin && !strcmp(pin, version);
}

/* A PEP 691 JSON page: its "files", each {"filename","url","hashes":{"sha256"}}, some
 * "yanked". */
static void take_json_page(const char *wheels, const char *page_url, const struct mp_buf *page, const char *pin,
                           struct mp_buf *flog) {
        _cleanup_json_ json_t *doc = json_loadb(page->data, page->len, JSON_REJECT_DUPLICATES, NULL);
        json_t *files = json_object_get(doc, "files"), *f;
        size_t i, taken = 0;
        char line[400];

        if (!json_is_array(files)) {
                snprintf(line, sizeof(line), "index: %.300s: not a PEP 691 project page (no \"files\")\n", page_url);
                mp_buf_append_trunc(flog, line, strlen(line));
                return;
        }
        json_array_foreach(files, i, f) {
                const char *file = json_string_value(json_object_get(f, "filename"));
                const char *url = json_string_value(json_object_get(f, "url"));
                json_t *yanked = json_object_get(f, "yanked");
                if (taken >= ENV_INDEX_FILES_MAX)
                        break;
                if (!file || !url)
                        continue;
                if (yanked && !json_is_false(yanked) && !json_is_null(yanked) && !yanked_but_pinned(file, pin))
                        continue;
                if (take_file(wheels, page_url, url, file,
                              json_string_value(json_object_get(json_object_get(f, "hashes"), "sha256")), flog))
                        taken++;
        }
}

/* A PEP 503 HTML page: its links, each with a #sha256= fragment; a link whose tag has
 * a data-yanked attribute (PEP 592) is yanked. */
static void take_html_page(const char *wheels, const char *page_url, struct mp_buf *page, const char *pin,
                           struct mp_buf *flog) {
        size_t taken = 0;

        for (char *a = strstr(page->data, "href=\""); a && taken < ENV_INDEX_FILES_MAX; a = strstr(a, "href=\"")) {
                char *open = a, *close;
                while (open > page->data && *open != '<')
                        open--;
                a += 6;
                char *end = strchr(a, '"'), *frag, *file;
                if (!end)
                        break;
                *end = 0;
                close = strchr(end + 1, '>');
                frag = strstr(a, "#sha256=");
                if (frag)
                        *frag = 0;
                file = strrchr(a, '/');
                file = file ? file + 1 : a;
                /* The attribute may stand before or after href, in the same tag. */
                bool yanked = close && (memmem(open, (size_t) (a - open), "data-yanked", 11) ||
                                        memmem(end + 1, (size_t) (close - end - 1), "data-yanked", 11));
                if (frag && (!yanked || yanked_but_pinned(file, pin)) &&
                    take_file(wheels, page_url, a, file, frag + 8, flog))
                        taken++;
                a = end + 1;
        }
}

/* The wheels of one project (its name normalized) from every index: its PEP 691 JSON
 * page when the index serves one, else its PEP 503 HTML page. */
static void fetch_project(struct mp_core *core, const char *wheels, const char *name, const char *pin,
                          struct mp_buf *flog) {
        static const char accept[] = "application/vnd.pypi.simple.v1+json, text/html;q=0.1";
        for (const char *ix = core->config->package_index; ix && *ix;) {
                size_t il = strcspn(ix, "\n");
                _cleanup_free_ char *page_url = NULL;
                struct mp_buf page = { .cap = ENV_INDEX_PAGE_MAX };
                struct sink k = { .page = &page };
                char type[80] = "";

                if (asprintf(&page_url, "%.*s/%s/", (int) il, ix, name) < 0)
                        return;
                ix = ix[il] ? ix + il + 1 : NULL;
                if (fetch(page_url, accept, &k, ENV_INDEX_PAGE_MAX, type, sizeof(type), flog) < 0 || !page.data) {
                        mp_buf_free(&page);
                        continue;
                }
                if (!strcmp(type, "application/vnd.pypi.simple.v1+json"))
                        take_json_page(wheels, page_url, &page, pin, flog);
                else
                        take_html_page(wheels, page_url, &page, pin, flog);
                mp_buf_free(&page);
        }
}

/* PEP 503's name: lower case, each run of '-', '_', '.' one '-'. */
static void normalize_name(const char *s, size_t n, char *out, size_t size) {
        size_t o = 0;
        for (size_t i = 0; i < n && name_char(s[i]) && o + 1 < size; i++) {
                char c = s[i];
                if (c == '-' || c == '_' || c == '.') {
                        if (o > 0 && out[o - 1] == '-')
                                continue;
                        c = '-';
                }
                out[o++] = (char) (c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        out[o] = 0;
}

/* Fetch the projects in `names` not yet in `done` (both JSON: an array, an object);
 * pins: {name: version} of the requirements that pin one with == or ===. */
static void fetch_missing(struct mp_core *core, json_t *names, json_t *done, json_t *pins, struct mp_buf *flog) {
        char wheels[PATH_MAX + 16];
        size_t i;
        json_t *n;

        snprintf(wheels, sizeof(wheels), "%s/.wheels", core->envs->layers);
        if (mkdir(wheels, 0700) < 0 && errno != EEXIST)
                return;
        json_array_foreach(names, i, n) {
                const char *name = json_string_value(n);
                if (!name[0] || json_object_get(done, name))
                        continue;
                json_object_set_new(done, name, json_true());
                fetch_project(core, wheels, name, json_string_value(json_object_get(pins, name)), flog);
        }
}

/* The version a requirement pins with == or === (one exact version, no wildcard, no
 * other specifier), into pins under its normalized name. */
static void add_pin(const char *req, json_t *pins) {
        const char *end = read_name(req), *p;
        char name[128], version[128];
        size_t n;

        if (!end || *end == '[')
                return;
        normalize_name(req, (size_t) (end - req), name, sizeof(name));
        p = skip_spaces(end);
        if (strncmp(p, "==", 2))
                return;
        p = skip_spaces(p + (p[2] == '=' ? 3 : 2));
        n = strcspn(p, " ,*");
        if (n == 0 || n >= sizeof(version) || *skip_spaces(p + n) == ',' || p[n] == '*')
                return;
        snprintf(version, sizeof(version), "%.*s", (int) n, p);
        json_object_set_new(pins, name, json_string(version));
}

/* The project pip could not find ("No matching distribution found for NAME..."), not
 * yet fetched: added to names, true; else false. */
static bool missing_project(const char *log, json_t *names, json_t *done) {
        static const char mark[] = "No matching distribution found for ";
        char name[128];
        const char *p = log ? strstr(log, mark) : NULL;

        if (!p)
                return false;
        p += strlen(mark);
        normalize_name(p, strlen(p), name, sizeof(name));
        if (!name[0] || json_object_get(done, name))
                return false;
        json_array_append_new(names, json_string(name));
        return true;
}

/* ---- resolution ---- */

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int cmp_lock(const void *a, const void *b) {
        json_t *x = *(json_t *const *) a, *y = *(json_t *const *) b;
        return strcmp(json_string_value(json_object_get(x, "name")), json_string_value(json_object_get(y, "name")));
}

/* The wheels pip took into dir: the lock, sorted by name; -EINVAL with *ret_error when
 * something there is not a wheel. */
static int lock_of(const char *dir, json_t **ret, char **ret_error) {
        _cleanup_json_ json_t *lock = json_array();
        DIR *d = opendir(dir);
        struct dirent *de;
        json_t *items[MP_MAX_REQUIREMENTS * 8];
        size_t n = 0;

        if (!d || !lock) {
                if (d)
                        closedir(d);
                return -ENOMEM;
        }
        while ((de = readdir(d))) {
                char path[PATH_MAX + 300], hex[2 * crypto_hash_sha256_BYTES + 1], name[128], version[128];
                const char *f = de->d_name, *dash = strchr(f, '-'), *dash2 = dash ? strchr(dash + 1, '-') : NULL;
                size_t fl = strlen(f);
                if (f[0] == '.')
                        continue;
                if (fl < 5 || strcmp(f + fl - 4, ".whl") || !dash || !dash2 || (size_t) (dash - f) >= sizeof(name) ||
                    (size_t) (dash2 - dash - 1) >= sizeof(version) || n >= ELEMENTSOF(items)) {
                        closedir(d);
                        for (size_t i = 0; i < n; i++)
                                json_decref(items[i]);
                        return asprintf(ret_error, "%.200s is not a wheel: only wheels are installed", f) < 0
                                       ? -ENOMEM : -EINVAL;
                }
                snprintf(path, sizeof(path), "%s/%s", dir, f);
                int r = sha256_file(path, hex);
                if (r < 0) {
                        closedir(d);
                        for (size_t i = 0; i < n; i++)
                                json_decref(items[i]);
                        return r;
                }
                /* The wheel's file name spells the project with '_' (PEP 427); the lock
                 * keeps the normalized name (PEP 503): lower case, '-'. */
                snprintf(name, sizeof(name), "%.*s", (int) (dash - f), f);
                for (char *c = name; *c; c++)
                        *c = *c == '_' || *c == '.' ? '-' : (char) (*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
                snprintf(version, sizeof(version), "%.*s", (int) (dash2 - dash - 1), dash + 1);
                items[n++] = json_pack("{s:s,s:s,s:s}", "name", name, "version", version, "sha256", hex);
        }
        closedir(d);
        qsort(items, n, sizeof(items[0]), cmp_lock);
        for (size_t i = 0; i < n; i++)
                json_array_append_new(lock, items[i]);
        *ret = TAKE_PTR(lock);
        return 0;
}

/* The cached wheels (LAYERS/.wheels) that pip took into dir are used now: their time
 * is renewed, so that the collector's grace covers them until their environment is
 * stored. */
static void touch_cached(struct mp_core *core, const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;

        while (d && (de = readdir(d))) {
                char path[PATH_MAX + 300];
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/.wheels/%s", core->envs->layers, de->d_name);
                (void) utimensat(AT_FDCWD, path, NULL, AT_SYMLINK_NOFOLLOW);
        }
        if (d)
                closedir(d);
}

/* Resolve reqs: 0 with *ret_lock, or 1 (it failed: *ret_error), with pip's log. */
static int resolve(struct mp_core *core, json_t *reqs, json_t **ret_lock, char **ret_log, char **ret_error) {
        char work[PATH_MAX + 32], file[PATH_MAX + 64], dl[PATH_MAX + 64];
        _cleanup_free_ char *text = NULL;
        size_t i, len = 0;
        json_t *item;
        int r;

        if ((r = work_dir(core, "resolve", work, sizeof(work))) < 0)
                return r;
        json_array_foreach(reqs, i, item)
                len += strlen(json_string_value(item)) + 1;
        if (!(text = calloc(1, len + 1))) {
                rm_tree(work);
                return -ENOMEM;
        }
        len = 0;
        json_array_foreach(reqs, i, item)
                len += (size_t) sprintf(text + len, "%s\n", json_string_value(item)); /* sized above */
        snprintf(file, sizeof(file), "%s/requirements.txt", work);
        snprintf(dl, sizeof(dl), "%s/wheels", work);
        if ((r = write_text(file, text)) < 0) {
                rm_tree(work);
                return r;
        }
        /* The requirements as arguments, so that pip's messages name them; a file only
         * when one carries --hash (an option pip reads in files only). */
        const char *args[16 + MP_MAX_REQUIREMENTS] = { "download", "--isolated", "--no-cache-dir",
                                                       "--disable-pip-version-check", "--no-input", "--progress-bar",
                                                       "off", "--only-binary=:all:", "--no-index", "-d", dl };
        size_t k = 11;
        if (strstr(text, "--hash=")) {
                args[k++] = "-r";
                args[k++] = file;
        } else {
                json_array_foreach(reqs, i, item)
                        if (k < ELEMENTSOF(args) - 1)
                                args[k++] = json_string_value(item);
        }
        args[k] = NULL;
        _cleanup_json_ json_t *names = json_array(), *done = json_object(), *pins = json_object();
        struct mp_buf flog = { .cap = ENV_LOG_MAX / 4 };
        if (core->config->package_index && names && done)
                json_array_foreach(reqs, i, item) {
                        char name[128];
                        const char *t = json_string_value(item);
                        normalize_name(t, strlen(t), name, sizeof(name));
                        json_array_append_new(names, json_string(name));
                        add_pin(t, pins);
                }
        for (int round = 0;; round++) {
                if (core->config->package_index && names && done)
                        fetch_missing(core, names, done, pins, &flog);
                r = pip_run(core, args, work, ret_log);
                if (r <= 0 || !core->config->package_index || !names || !done || round + 1 >= ENV_INDEX_ROUNDS ||
                    !missing_project(*ret_log, names, done))
                        break;
                free(*ret_log);
                *ret_log = NULL;
        }
        if (r >= 0 && flog.len > 0 && *ret_log) {
                char *both = NULL;
                if (asprintf(&both, "%s%s", flog.data, *ret_log) >= 0) {
                        free(*ret_log);
                        *ret_log = both;
                }
        }
        mp_buf_free(&flog);
        if (r > 0) {
                *ret_error = error_lines(*ret_log);
                r = 1;
        } else if (r == 0) {
                if (core->config->package_index)
                        touch_cached(core, dl);
                r = lock_of(dl, ret_lock, ret_error);
                if (r == -EINVAL)
                        r = 1;
        }
        rm_tree(work);
        return r;
}

/* ---- layers in the object store ----
 *
 * A layer exists in the layers folder of the node that built it. So that any node
 * sharing the store and the object store runs its environment, the builder also stores
 * it as a tar (environments/<id>.tar), its sha256 recorded with the environment; a node
 * that must run an environment whose layer it lacks fetches the archive, checks that
 * hash, unpacks it into a private folder and renames it into place, read-only as the
 * builder leaves it. The archive is deterministic (entries sorted, no times, no owners),
 * so two builders of one lock store the same bytes. */

static void archive_key(const char *id, char *buf, size_t size) {
        snprintf(buf, size, "environments/%s.tar", id);
}

static la_ssize_t tar_write(struct archive *a, void *ud, const void *p, size_t n) {
        if (mp_buf_append(ud, p, n) < 0) {
                archive_set_error(a, EFBIG, "the layer is over %lld MiB", ENV_ARCHIVE_MAX >> 20);
                return -1;
        }
        return (la_ssize_t) n;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

/* One entry of the layer root/rel (rel "" the root itself, not written) and, for a
 * folder, what it holds, in name order. 0 or -errno. */
static int tar_add(struct archive *a, const char *root, const char *rel) {
        char path[PATH_MAX];
        struct stat st;
        int r = 0;

        if ((size_t) snprintf(path, sizeof(path), "%s%s%s", root, rel[0] ? "/" : "", rel) >= sizeof(path))
                return -ENAMETOOLONG;
        if (lstat(path, &st) < 0)
                return -errno;
        if (rel[0]) {
                struct archive_entry *e = archive_entry_new();
                char target[PATH_MAX];
                ssize_t tl = 0;
                if (!e)
                        return -ENOMEM;
                archive_entry_set_pathname(e, rel);
                archive_entry_set_perm(e, st.st_mode & 0777);
                if (S_ISDIR(st.st_mode)) {
                        archive_entry_set_filetype(e, AE_IFDIR);
                } else if (S_ISREG(st.st_mode)) {
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_size(e, st.st_size);
                } else if (S_ISLNK(st.st_mode) && (tl = readlink(path, target, sizeof(target) - 1)) > 0) {
                        target[tl] = 0;
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_set_symlink(e, target);
                } else {
                        r = -EINVAL; /* nothing else is in a layer pip made */
                }
                if (r == 0 && archive_write_header(a, e) != ARCHIVE_OK)
                        r = -EIO;
                archive_entry_free(e);
                if (r == 0 && S_ISREG(st.st_mode)) {
                        /* On the heap: this function recurses, once per folder level. */
                        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                        _cleanup_free_ char *buf = malloc(65536);
                        ssize_t n = 0;
                        if (fd < 0)
                                return -errno;
                        if (!buf)
                                return -ENOMEM;
                        while (r == 0 && (n = read(fd, buf, 65536)) > 0)
                                if (archive_write_data(a, buf, (size_t) n) != n)
                                        r = -EIO;
                        if (n < 0)
                                r = -errno;
                }
        }
        if (r < 0 || !S_ISDIR(st.st_mode))
                return r;
        struct dirent **names = NULL;
        int n = scandir(path, &names, NULL, by_name);
        if (n < 0)
                return -errno;
        for (int i = 0; i < n; i++) {
                char child[PATH_MAX];
                const char *f = names[i]->d_name;
                if (r == 0 && strcmp(f, ".") && strcmp(f, "..")) {
                        if ((size_t) snprintf(child, sizeof(child), "%s%s%s", rel, rel[0] ? "/" : "", f) >=
                            sizeof(child))
                                r = -ENAMETOOLONG;
                        else
                                r = tar_add(a, root, child);
                }
                free(names[i]);
        }
        free(names);
        return r;
}

/* The layer at dir as a tar into *out (its cap set by the caller). 0 or -errno, with
 * libarchive's reason in why. */
static int layer_pack(const char *dir, struct mp_buf *out, char *why, size_t why_size) {
        struct archive *a = archive_write_new();
        int r;

        if (!a)
                return -ENOMEM;
        if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
            archive_write_open(a, out, NULL, tar_write, NULL) != ARCHIVE_OK)
                r = -EIO;
        else
                r = tar_add(a, dir, "");
        if (archive_write_close(a) != ARCHIVE_OK && r == 0)
                r = -EIO;
        snprintf(why, why_size, "%s", r == -EIO && archive_error_string(a) ? archive_error_string(a)
                                      : strerror(-r));
        archive_write_free(a);
        return r;
}

/* Store the layer LAYERS/<id> in the object store and its sha256 with the environment.
 * 0, or -errno with the reason in err. */
static int layer_store(struct mp_core *core, const char *id, struct mp_error *err) {
        char layer[PATH_MAX + 80], key[128], why[200];
        char hex[2 * crypto_hash_sha256_BYTES + 1];
        struct mp_buf tar = { .cap = (size_t) ENV_ARCHIVE_MAX };
        int r;

        snprintf(layer, sizeof(layer), "%s/%s", core->envs->layers, id);
        archive_key(id, key, sizeof(key));
        if ((r = layer_pack(layer, &tar, why, sizeof(why))) < 0 || !tar.data) {
                mp_buf_free(&tar);
                return mp_error_set(err, r < 0 ? -r : EIO, 500, "storage", "cannot archive the layer: %s", why);
        }
        mp_core_sha256_hex(tar.data, tar.len, hex);
        r = MP_BLOBS(core->blobs)->put(core->blobs, key, tar.data, tar.len, err);
        mp_buf_free(&tar);
        if (r < 0)
                return r;
        return MP_STORE(core->store)->env_set_archive(core->store, id, hex, err);
}

/* Is rel (an archive entry's name) a relative path that stays inside its folder, and,
 * for a link (target not NULL), does the link too? A link's ".." may only lead its
 * target: after a name, which may itself be a link to anywhere inside, ".." would go
 * up from where that link leads, which no count of names here can tell. */
static bool entry_inside(const char *rel, const char *target) {
        bool named = false;
        int depth = 0;

        if (!rel || !rel[0] || rel[0] == '/')
                return false;
        for (const char *p = rel; *p;) {
                size_t n = strcspn(p, "/");
                if ((n == 2 && !strncmp(p, "..", 2)))
                        return false;
                depth += n > 0 && !(n == 1 && *p == '.');
                p += n + (p[n] == '/');
        }
        if (!target)
                return true;
        depth--; /* a link resolves from the folder that holds it */
        if (!target[0] || target[0] == '/')
                return false;
        for (const char *p = target; *p;) {
                size_t n = strcspn(p, "/");
                if (n == 2 && !strncmp(p, "..", 2))
                        depth--;
                else if (n > 0 && !(n == 1 && *p == '.'))
                        depth++, named = true;
                if (depth < 0 || (named && n == 2 && !strncmp(p, "..", 2)))
                        return false;
                p += n + (p[n] == '/');
        }
        return true;
}

/* Unpack the tar data into dest (an empty folder): folders, regular files and links
 * that stay inside only; no absolute name, no "..", no hard link, no device, fifo or
 * socket, no set-id bit. 0, or -EBADMSG with the reason in why, or -errno. */
static int layer_unpack(const char *data, size_t len, const char *dest, char *why, size_t why_size) {
        struct archive *a = archive_read_new(), *w = archive_write_disk_new();
        struct archive_entry *e;
        int r = 0, k;

        why[0] = 0;
        if (!a || !w) {
                archive_read_free(a);
                archive_write_free(w);
                return -ENOMEM;
        }
        archive_read_support_format_tar(a);
        archive_write_disk_set_options(w, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                  ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_NO_OVERWRITE);
        if (archive_read_open_memory(a, data, len) != ARCHIVE_OK)
                r = -EBADMSG;
        while (r == 0 && (k = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                mode_t type = archive_entry_filetype(e);
                char full[PATH_MAX];
                if (archive_entry_hardlink(e) || (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)) {
                        snprintf(why, why_size, "%.200s is not a file, a folder or a link", name ? name : "?");
                        r = -EBADMSG;
                } else if (!entry_inside(name, type == AE_IFLNK ? archive_entry_symlink(e) ?: "" : NULL)) {
                        snprintf(why, why_size, "%.200s points outside the layer", name ? name : "?");
                        r = -EBADMSG;
                } else if ((size_t) snprintf(full, sizeof(full), "%s/%s", dest, name) >= sizeof(full)) {
                        r = -ENAMETOOLONG;
                } else {
                        archive_entry_set_pathname(e, full);
                        archive_entry_set_perm(e, archive_entry_perm(e) & 0755);
                        if (archive_write_header(w, e) != ARCHIVE_OK)
                                r = -EBADMSG;
                        const void *buf;
                        size_t n;
                        la_int64_t off;
                        while (r == 0 && type == AE_IFREG &&
                               (k = archive_read_data_block(a, &buf, &n, &off)) == ARCHIVE_OK)
                                if (archive_write_data_block(w, buf, n, off) != ARCHIVE_OK)
                                        r = -EIO;
                        if (r == 0 && type == AE_IFREG && k != ARCHIVE_EOF)
                                r = -EBADMSG;
                        if (r == 0 && archive_write_finish_entry(w) != ARCHIVE_OK)
                                r = -EIO;
                        if (r < 0 && !why[0])
                                snprintf(why, why_size, "%.200s: %.200s", name,
                                         archive_error_string(w) ?: archive_error_string(a) ?: "unreadable");
                }
        }
        if (r == 0 && k != ARCHIVE_EOF) {
                snprintf(why, why_size, "%.300s", archive_error_string(a) ?: "not a tar");
                r = -EBADMSG;
        }
        archive_read_free(a);
        archive_write_free(w);
        return r;
}

/* Bring the layer of env (its row, ready) from the object store into LAYERS/<id>:
 * 0; -ENOENT when no archive of it is recorded or stored; -EBADMSG when the archive is
 * not the one recorded or is refused; other -errno (the object store is down); err
 * says which. */
static int layer_fetch(struct mp_core *core, json_t *env, struct mp_error *err) {
        const char *id = json_string_value(json_object_get(env, "id"));
        const char *want = json_string_value(json_object_get(env, "archive_sha256"));
        char key[128], work[PATH_MAX + 32], dest[PATH_MAX + 64], layer[PATH_MAX + 80], why[420];
        char hex[2 * crypto_hash_sha256_BYTES + 1];
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int r;

        if (!want)
                return mp_error_set(err, ENOENT, 409, "EnvironmentNotReady", "no archive of its layer is stored");
        archive_key(id, key, sizeof(key));
        if ((r = MP_BLOBS(core->blobs)->get(core->blobs, key, (size_t) ENV_ARCHIVE_MAX, &data, &len, err)) < 0)
                return r;
        mp_core_sha256_hex(data, len, hex);
        if (strcmp(hex, want))
                return mp_error_set(err, EBADMSG, 409, "EnvironmentNotReady",
                                    "the archive of its layer (%s) does not have the sha256 recorded", key);
        if ((r = work_dir(core, "fetch", work, sizeof(work))) < 0)
                return mp_error_set(err, -r, 500, "storage", "cannot make a folder for its layer: %s", strerror(-r));
        snprintf(dest, sizeof(dest), "%s/layer", work);
        snprintf(layer, sizeof(layer), "%s/%s", core->envs->layers, id);
        if (mkdir(dest, 0700) < 0)
                r = -errno;
        else
                r = layer_unpack(data, len, dest, why, sizeof(why));
        if (r == 0 && (nftw(dest, ro_one, 16, FTW_PHYS) != 0 ||
                       (rename(dest, layer) < 0 && errno != EEXIST && errno != ENOTEMPTY)))
                r = -EIO;
        /* What was not renamed (another thread brought it first) is ours to remove. */
        (void) nftw(work, rw_one, 16, FTW_PHYS);
        rm_tree(work);
        if (r == -EBADMSG)
                return mp_error_set(err, EBADMSG, 409, "EnvironmentNotReady", "the archive of its layer is refused: %s",
                                    why);
        if (r < 0)
                return mp_error_set(err, -r, 500, "storage", "cannot unpack its layer: %s",
                                    why[0] && r != -EIO ? why : strerror(-r));
        mp_info("environment %.16s: its layer was brought from the object store", id);
        return 0;
}

/* ---- the build queue ---- */

static int set_state(struct mp_core *core, const char *id, const char *status, const char *log,
                     const char *error, int64_t ms) {
        _cleanup_error_ struct mp_error err = { 0 };
        int r = MP_STORE(core->store)->env_set(core->store, id, status, log, error, ms, &err);
        if (r < 0)
                mp_warn("environment %.16s: cannot store its state %s: %s", id, status, err.message);
        return r;
}

/* Install the lock of env (its row) into LAYERS/<id>. */
static void build(struct mp_core *core, json_t *env) {
        const char *id = json_string_value(json_object_get(env, "id"));
        char work[PATH_MAX + 32], file[PATH_MAX + 64], target[PATH_MAX + 64], layer[PATH_MAX + 80];
        _cleanup_free_ char *log = NULL, *error = NULL, *text = NULL;
        size_t i, len = 0;
        json_t *item;
        struct stat st;
        int64_t t0 = mp_mono_ms();
        int r;

        snprintf(layer, sizeof(layer), "%s/%s", core->envs->layers, id);
        if (stat(layer, &st) == 0) { /* built before (a restart between the rename and the row) */
                _cleanup_error_ struct mp_error aerr = { 0 };
                if (!json_is_string(json_object_get(env, "archive_sha256")) && layer_store(core, id, &aerr) < 0)
                        mp_warn("environment %.16s: its layer is not in the object store: %s", id, aerr.message);
                set_state(core, id, "ready", "the layer was already built\n", NULL, 0);
                return;
        }
        if (set_state(core, id, "building", "", NULL, -1) < 0)
                return;
        json_t *lock = json_object_get(env, "resolved");
        text = calloc(1, json_array_size(lock) * 400 + 1);
        if (!text || (r = work_dir(core, "build", work, sizeof(work))) < 0) {
                set_state(core, id, "failed", "", "the server could not make a build folder", -1);
                mp_core_count_env_build(core, false, mp_mono_ms() - t0);
                return;
        }
        json_array_foreach(lock, i, item)
                len += (size_t) snprintf(text + len, 400, "%.100s==%.100s --hash=sha256:%.64s\n",
                                         json_string_value(json_object_get(item, "name")),
                                         json_string_value(json_object_get(item, "version")),
                                         json_string_value(json_object_get(item, "sha256")));
        snprintf(file, sizeof(file), "%s/lock.txt", work);
        snprintf(target, sizeof(target), "%s/layer", work);
        const char *args[] = { "install", "--isolated", "--no-cache-dir", "--disable-pip-version-check", "--no-input",
                               "--progress-bar", "off", "--only-binary=:all:", "--no-index", "--no-deps",
                               "--no-compile", "--require-hashes", "--target", target, "-r", file, NULL };
        if ((r = write_text(file, text)) < 0 || (r = pip_run(core, args, work, &log)) != 0) {
                error = r > 0 && log ? error_lines(log) : strdup("the server could not run pip");
        } else if (nftw(target, ro_one, 16, FTW_PHYS) != 0 || (rename(target, layer) < 0 && errno != EEXIST &&
                                                                errno != ENOTEMPTY)) {
                error = strdup("the server could not store the layer");
        }
        if (r < 0 && !error)
                error = strdup("the server could not run pip");
        /* A layer not renamed (built twice at once) is ours to remove: writable again. */
        (void) nftw(work, rw_one, 16, FTW_PHYS);
        rm_tree(work);
        if (!error) {
                /* For the other nodes (before it is ready, so that a node that sees it
                 * ready finds its archive); without it this node alone can run it. */
                _cleanup_error_ struct mp_error aerr = { 0 };
                if (layer_store(core, id, &aerr) < 0) {
                        char *more = NULL;
                        mp_warn("environment %.16s: its layer is not in the object store: %s", id, aerr.message);
                        if (asprintf(&more, "%sthe layer could not be stored in the object store (%s): only this node "
                                     "can run it\n", log ? log : "", aerr.message) >= 0) {
                                free(log);
                                log = more;
                        }
                }
        }
        set_state(core, id, error ? "failed" : "ready", log ? log : "", error, mp_mono_ms() - t0);
        mp_core_count_env_build(core, !error, mp_mono_ms() - t0);
        mp_info("environment %.16s: %s in %" PRId64 " ms", id, error ? "failed" : "ready", mp_mono_ms() - t0);
}

static void *builder(void *arg) {
        struct mp_core *core = arg;
        struct mp_envs *e = core->envs;

        pthread_mutex_lock(&e->lock);
        for (;;) {
                while (!e->stop && json_array_size(e->todo) == 0)
                        pthread_cond_wait(&e->cond, &e->lock);
                if (e->stop)
                        break;
                _cleanup_free_ char *id = strdup(json_string_value(json_array_get(e->todo, 0)));
                json_array_remove(e->todo, 0);
                pthread_mutex_unlock(&e->lock);
                _cleanup_error_ struct mp_error err = { 0 };
                _cleanup_json_ json_t *env = NULL;
                if (id && MP_STORE(core->store)->env_get(core->store, id, &env, &err) == 0 &&
                    !strcmp(json_string_value(json_object_get(env, "status")) ?: "", "queued"))
                        build(core, env);
                pthread_mutex_lock(&e->lock);
        }
        pthread_mutex_unlock(&e->lock);
        return NULL;
}

static void enqueue(struct mp_core *core, const char *id) {
        struct mp_envs *e = core->envs;

        pthread_mutex_lock(&e->lock);
        json_array_append_new(e->todo, json_string(id));
        if (!e->started && pthread_create(&e->thread, NULL, builder, core) == 0)
                e->started = true;
        pthread_cond_signal(&e->cond);
        pthread_mutex_unlock(&e->lock);
}

/* ---- the core's side ---- */

int mp_core_layers_dir(const struct mp_config *config, char *buf, size_t size) {
        char dir[PATH_MAX + 16];
        int r;

        snprintf(dir, sizeof(dir), "%s/layers", config->data_dir);
        if ((r = mp_mkdir_p(dir, 0700)) < 0)
                return r;
        if (!realpath(dir, buf) || strlen(buf) >= size)
                return -errno ?: -ENAMETOOLONG;
        return 0;
}

int mp_core_envs_open(struct mp_core *core, struct mp_error *err) {
        struct mp_envs *e = calloc(1, sizeof(*e));
        char path[PATH_MAX];
        int r;

        if (!e || !(e->todo = json_array())) {
                free(e);
                return -ENOMEM;
        }
        pthread_mutex_init(&e->lock, NULL);
        pthread_cond_init(&e->cond, NULL);
        core->envs = e;
        /* Every node has a layers folder: one that does not build brings the layers it
         * runs from the object store. */
        e->builds = core->config->wheelhouse || core->config->package_index;
        if ((r = mp_core_layers_dir(core->config, path, sizeof(path))) < 0 && e->builds)
                return mp_error_set(err, -r, 500, "config", "cannot create the layers folder under %s: %s",
                                    core->config->data_dir, strerror(-r));
        if (r < 0) { /* this node then runs the base environment only */
                mp_warn("cannot create the layers folder under %s: %s", core->config->data_dir, strerror(-r));
                return 0;
        }
        snprintf(e->layers, sizeof(e->layers), "%s", path);
        return 0;
}

void mp_core_envs_close(struct mp_core *core) {
        struct mp_envs *e = core ? core->envs : NULL;

        if (!e)
                return;
        pthread_mutex_lock(&e->lock);
        e->stop = true;
        pthread_cond_signal(&e->cond);
        pthread_mutex_unlock(&e->lock);
        if (e->started)
                pthread_join(e->thread, NULL);
        json_decref(e->todo);
        pthread_mutex_destroy(&e->lock);
        pthread_cond_destroy(&e->cond);
        free(e);
        core->envs = NULL;
}

int mp_core_envs_recover(struct mp_core *core, struct mp_error *err) {
        _cleanup_json_ json_t *rows = NULL;
        size_t i;
        json_t *row;
        int r;

        if (!core->envs || !core->envs->builds)
                return 0;
        if ((r = MP_STORE(core->store)->env_unfinished(core->store, &rows, err)) < 0)
                return r;
        json_array_foreach(rows, i, row) {
                const char *id = json_string_value(json_object_get(row, "id"));
                /* A build cut short starts again from its lock. */
                if ((r = MP_STORE(core->store)->env_set(core->store, id, "queued", "", NULL, -1, err)) < 0)
                        return r;
                enqueue(core, id);
        }
        return 0;
}

int mp_core_env_prepare(struct mp_core *core, json_t *reqs, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *lock = NULL, *env = NULL, *row = NULL;
        _cleanup_free_ char *log = NULL, *error = NULL, *canon = NULL, *reqs_text = NULL;
        char id[2 * crypto_hash_sha256_BYTES + 1];
        int r;

        *ret = NULL;
        if (json_array_size(reqs) == 0)
                return 0;
        if (!core->envs || !core->envs->builds) {
                mp_error_add_field(err, "requirements", "cannot be installed: this server has no package source "
                                   "(its operator starts it with --wheelhouse DIR or --package-index URL)");
                return mp_core_validation_done(err, "fields");
        }
        if ((r = resolve(core, reqs, &lock, &log, &error)) < 0)
                return mp_error_set(err, -r, 500, "internal", "the requirements could not be resolved: %s",
                                    strerror(-r));
        if (lock) {
                canon = json_dumps(lock, JSON_COMPACT | JSON_SORT_KEYS);
        } else {
                /* Unresolved: named by the sorted requirements, so that asking again for
                 * the same set finds (and retries) the same failed environment. */
                size_t n = json_array_size(reqs);
                const char *names[MP_MAX_REQUIREMENTS];
                for (size_t i = 0; i < n && i < ELEMENTSOF(names); i++)
                        names[i] = json_string_value(json_array_get(reqs, i));
                qsort(names, MP_MIN(n, ELEMENTSOF(names)), sizeof(names[0]), cmp_str);
                size_t len = 16;
                for (size_t i = 0; i < n && i < ELEMENTSOF(names); i++)
                        len += strlen(names[i]) + 1;
                canon = calloc(1, len);
                if (canon) {
                        size_t k = (size_t) snprintf(canon, len, "unresolved\n");
                        for (size_t i = 0; i < n && i < ELEMENTSOF(names); i++)
                                k += (size_t) snprintf(canon + k, len - k, "%s\n", names[i]);
                }
        }
        reqs_text = json_dumps(reqs, JSON_COMPACT);
        if (!canon || !reqs_text)
                return -ENOMEM;
        mp_core_sha256_hex(canon, strlen(canon), id);
        env = json_pack("{s:s,s:s,s:O,s:s,s:I}", "id", id, "status", lock ? "queued" : "failed", "requirements", reqs,
                        "log", log ? log : "", "created_at", (json_int_t) mp_now_ms());
        if (!env)
                return -ENOMEM;
        json_object_set(env, "resolved", lock ? lock : json_null());
        json_object_set_new(env, "build_error", error ? json_string(error) : json_null());
        if ((r = MP_STORE(core->store)->env_create(core->store, env, err)) < 0)
                return r;
        if (r == 1 && lock) {
                enqueue(core, id);
        } else if (r == 0 && !lock) {
                /* Failed again: the latest log and reason. */
                if ((r = MP_STORE(core->store)->env_set(core->store, id, "failed", log, error, -1, err)) < 0)
                        return r;
        } else if (r == 0) {
                if ((r = MP_STORE(core->store)->env_requeue(core->store, id, reqs_text, canon, err)) < 0)
                        return r;
                if (r == 1)
                        enqueue(core, id);
        }
        if ((r = MP_STORE(core->store)->env_get(core->store, id, &row, err)) < 0)
                return r;
        *ret = json_pack("{s:s,s:O}", "id", id, "status", json_object_get(row, "status"));
        return *ret ? 0 : -ENOMEM;
}

static const char *env_id_of(json_t *ver) {
        const char *id = json_string_value(json_object_get(ver, "environment_id"));
        return id && *id ? id : NULL;
}

const char *mp_core_version_env(json_t *ver, char *buf, size_t size) {
        const char *id = env_id_of(ver);
        if (!id)
                return NULL;
        snprintf(buf, size, "%s", id);
        return buf;
}

json_t *mp_core_env_brief(struct mp_core *core, json_t *ver) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *row = NULL;
        const char *id = env_id_of(ver);

        if (!id)
                return json_null();
        if (MP_STORE(core->store)->env_get(core->store, id, &row, &err) < 0)
                return json_pack("{s:s,s:n}", "id", id, "status");
        return json_pack("{s:s,s:O}", "id", id, "status", json_object_get(row, "status"));
}

/* Does this node build layers, and has it id's? */
static bool layer_here(struct mp_core *core, const char *id) {
        char path[PATH_MAX + 80];
        struct stat st;

        if (!core->envs || !core->envs->builds || !core->envs->layers[0])
                return false;
        snprintf(path, sizeof(path), "%s/%s", core->envs->layers, id);
        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Does this node run calls, and is id's layer missing from it? */
static bool layer_missing(struct mp_core *core, const char *id) {
        char path[PATH_MAX + 80];
        struct stat st;

        if (!core->envs || !core->envs->layers[0] || core->config->workers <= 0)
                return false;
        snprintf(path, sizeof(path), "%s/%s", core->envs->layers, id);
        return stat(path, &st) < 0 && errno == ENOENT;
}

int mp_core_env_check(struct mp_core *core, json_t *ver, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        const char *id = env_id_of(ver);
        int r;

        if (!id)
                return 0;
        if ((r = MP_STORE(core->store)->env_get(core->store, id, &row, err)) < 0)
                return r;
        const char *status = json_string_value(json_object_get(row, "status"));
        _cleanup_error_ struct mp_error ferr = { 0 };
        if (status && !strcmp(status, "ready") && !json_is_string(json_object_get(row, "archive_sha256")) &&
            layer_here(core, id) && layer_store(core, id, &ferr) < 0) {
                /* Built here before layers were stored (or the object store was down
                 * then): stored now, for the other nodes; this node runs it anyway. */
                mp_warn("environment %.16s: its layer is not in the object store: %s", id, ferr.message);
                mp_error_clear(&ferr);
        }
        if (status && !strcmp(status, "ready") && layer_missing(core, id) &&
            (r = layer_fetch(core, row, &ferr)) < 0) {
                /* Ready, but its layer is not on this node (another node built it, or it
                 * was removed by hand) nor to be had from the object store. */
                if (r != -ENOENT && r != -EBADMSG)
                        return mp_error_set(err, -r, 503, "storage", "the layer of this function version's "
                                            "environment cannot be brought to this node now: %s", ferr.message);
                if (!core->envs->builds) {
                        r = mp_error_set(err, EAGAIN, 409, "EnvironmentNotReady",
                                         "the environment of this function version is ready, but its layer is not "
                                         "on this node and cannot be brought from the object store (%.400s): a node "
                                         "with its operator's --wheelhouse or --package-index builds it again when "
                                         "one of its calls reaches it",
                                         ferr.message);
                        json_decref(err->errors);
                        err->errors = json_pack("{s:{s:s,s:s}}", "environment", "id", id, "status", status);
                        return r;
                }
                /* A builder builds it again from its lock, which gives the same bytes. */
                mp_warn("environment %.16s: %s: building its layer again from its lock", id, ferr.message);
                if ((r = MP_STORE(core->store)->env_set(core->store, id, "queued", "", NULL, -1, err)) < 0)
                        return r;
                enqueue(core, id);
                status = "queued";
        }
        if (status && !strcmp(status, "ready"))
                return 0;
        const char *why = json_string_value(json_object_get(row, "build_error"));
        bool failed = status && !strcmp(status, "failed");
        r = mp_error_set(err, EAGAIN, 409, "EnvironmentNotReady",
                         failed ? "the environment of this function version failed to build: %.600s"
                                : "the environment of this function version is %.600s: call again once it is "
                                  "ready (GET /api/v1/environments/{id}), or wait with ?wait=S",
                         failed ? (why ? why : "see its log") : status ? status : "unknown");
        json_decref(err->errors);
        err->errors = json_pack("{s:{s:s,s:s?}}", "environment", "id", id, "status", status);
        return r;
}

int mp_core_environment_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                            struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        int r;

        (void) p; /* any signed-in user: an environment holds published packages only */
        if (!id || strlen(id) != ENV_ID_HEX || strspn(id, "0123456789abcdef") != ENV_ID_HEX)
                return mp_core_not_found(err, "environment", id ? id : "");
        r = MP_STORE(core->store)->env_get(core->store, id, &row, err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "environment", id);
        if (r < 0)
                return r;
        json_t *lock = json_object_get(row, "resolved"), *ms = json_object_get(row, "build_ms");
        _cleanup_json_ json_t *empty = json_string(""), *none = json_array();
        json_t *out = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "id", json_object_get(row, "id"), "status",
                                json_object_get(row, "status"), "requirements", json_object_get(row, "requirements"),
                                "lock", json_is_array(lock) ? lock : none, "log",
                                json_object_get(row, "log") ?: empty, "error",
                                json_object_get(row, "build_error") ?: json_null(), "build_ms",
                                json_is_integer(ms) ? ms : json_null(), "created_at",
                                json_object_get(row, "created_at"));
        static const char *const times[] = { "created_at", NULL };
        static const char *const drop[] = { NULL };
        if (!out)
                return -ENOMEM;
        mp_core_shape(out, times, drop);
        *ret = out;
        return 0;
}

int mp_core_envs_gc(struct mp_core *core, int64_t now_ms, json_int_t *ret_count, struct mp_error *err) {
        _cleanup_json_ json_t *rows = NULL;
        size_t i;
        json_t *row;
        int r;

        *ret_count = 0;
        if (!core->envs || !core->envs->layers[0])
                return 0;
        /* An hour's grace: an environment resolved a moment ago may not be named by its
         * version yet. A layer removed while a version still comes to use it is built
         * again from its lock by that version's next call (mp_core_env_check). */
        if ((r = MP_STORE(core->store)->env_unused(core->store, now_ms - ENV_GC_GRACE_MS, &rows, err)) < 0)
                return r;
        json_array_foreach(rows, i, row) {
                char path[PATH_MAX + 80], key[128];
                struct stat st;
                const char *id = json_string_value(json_object_get(row, "id"));
                /* Its archive goes with it (whichever node collects), then its record:
                 * a pass cut short between the two deletes it again. A node that
                 * comes to fetch it meanwhile finds none (as if never stored). */
                archive_key(id, key, sizeof(key));
                if (json_is_string(json_object_get(row, "archive_sha256")) &&
                    ((r = MP_BLOBS(core->blobs)->del(core->blobs, key, err)) < 0 ||
                     (r = MP_STORE(core->store)->env_set_archive(core->store, id, NULL, err)) < 0))
                        return r;
                snprintf(path, sizeof(path), "%s/%s", core->envs->layers, id);
                if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                (void) nftw(path, rw_one, 16, FTW_PHYS);
                rm_tree(path);
                if (lstat(path, &st) < 0)
                        (*ret_count)++;
        }
        return 0;
}

int mp_core_wheels_gc(struct mp_core *core, int64_t now_ms, json_int_t *ret_count, json_int_t *ret_bytes,
                      struct mp_error *err) {
        _cleanup_json_ json_t *rows = NULL, *keep = json_object();
        char dir[PATH_MAX + 16];
        struct dirent *de;
        size_t i, j;
        json_t *row, *item;
        DIR *d;
        int r;

        *ret_count = *ret_bytes = 0;
        if (!core->envs || !core->envs->layers[0])
                return 0;
        if (!keep)
                return -ENOMEM;
        snprintf(dir, sizeof(dir), "%s/.wheels", core->envs->layers);
        /* The same hour's grace as the layers', on the environments and on the files: a
         * wheel fetched or used by a resolution a moment ago may not be in a stored lock
         * yet. */
        if ((r = MP_STORE(core->store)->env_in_use(core->store, now_ms - ENV_GC_GRACE_MS, &rows, err)) < 0)
                return r;
        json_array_foreach(rows, i, row)
                json_array_foreach(json_object_get(row, "resolved"), j, item)
                        if (json_string_value(json_object_get(item, "sha256")))
                                json_object_set_new(keep, json_string_value(json_object_get(item, "sha256")),
                                                    json_true());
        if (!(d = opendir(dir)))
                return errno == ENOENT ? 0 : mp_error_set(err, errno, 500, "storage", "cannot read %s: %s", dir,
                                                          strerror(errno));
        while ((de = readdir(d))) {
                char path[PATH_MAX + 300], hex[2 * crypto_hash_sha256_BYTES + 1];
                struct stat st;
                snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                /* Dot files: "." and "..", and transfers under way (.fetch-*). */
                if (de->d_name[0] == '.' || lstat(path, &st) < 0 || !S_ISREG(st.st_mode) ||
                    (int64_t) st.st_mtim.tv_sec * 1000 >= now_ms - ENV_GC_GRACE_MS ||
                    sha256_file(path, hex) < 0 || json_object_get(keep, hex))
                        continue;
                if (unlink(path) == 0) {
                        (*ret_count)++;
                        *ret_bytes += (json_int_t) st.st_size;
                }
        }
        closedir(d);
        return 0;
}
