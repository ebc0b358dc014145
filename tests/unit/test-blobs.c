/* Unit tests of blobs/ through its port. Every case that stores objects runs against the
 * file: backend (in a temporary folder) and, when MECAPY_TEST_S3_URL holds an s3:// URL
 * (tests/services/s3.sh prints one), against that S3 server too; the case names end in
 * _file or _s3. The S3 cases also need AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, and use
 * tests/services/s3_readback.py (boto3) as an independent client. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#include "base/util.h"
#include "blobs/blobs-internal.h"
#include "blobs/blobs.h"

enum backend { BACKEND_FILE, BACKEND_S3 };
static enum backend backend;
static const char *s3_url;      /* MECAPY_TEST_S3_URL */
static char tmp_dir[4096];      /* file: the temporary folder */
static char s3_prefix[64];      /* s3: "mp-test-<id>/", this case's corner of the bucket */
static char cur_url[8400];      /* the URL fresh() opened */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
        (void) st;
        (void) flag;
        (void) f;
        return remove(path);
}

static const char *backend_name(void) {
        return backend == BACKEND_S3 ? "s3" : "file";
}

/* The S3 URL with one more parameter. */
static void s3_url_with(char *out, size_t size, const char *base, const char *param) {
        snprintf(out, size, "%s%s%s", base, strchr(base, '?') ? "&" : "?", param);
}

/* A fresh store: a new temporary folder (its objects folder not created yet), or a new
 * prefix in the S3 bucket. */
static struct mp_blobs *fresh(void) {
        struct mp_error err = { 0 };
        struct mp_blobs *b = NULL;
        int r;

        if (backend == BACKEND_S3) {
                char id[MP_ID_LEN + 1], param[96];
                mp_id_new(id);
                snprintf(s3_prefix, sizeof(s3_prefix), "mp-test-%s/", id);
                snprintf(param, sizeof(param), "prefix=%s", s3_prefix);
                s3_url_with(cur_url, sizeof(cur_url), s3_url, param);
        } else {
                const char *base = getenv("TMPDIR");
                snprintf(tmp_dir, sizeof(tmp_dir), "%s/mp-test-blobs-XXXXXX",
                         base && *base ? base : "/tmp");
                if (!mkdtemp(tmp_dir)) {
                        perror("mkdtemp");
                        exit(2);
                }
                snprintf(cur_url, sizeof(cur_url), "file:%s/data/objects", tmp_dir);
        }
        r = mp_blobs_open(cur_url, &b, &err);
        if (r < 0) {
                fprintf(stderr, "open %s: %d %s\n", cur_url, r, err.message);
                exit(2);
        }
        mp_error_clear(&err);
        return b;
}

static void done(struct mp_blobs *b) {
        mp_blobs_close(b);
        if (backend == BACKEND_S3) {
                /* Leave nothing behind in the bucket (it may be a real one). */
                struct mp_error err = { 0 };
                struct mp_blobs *all = NULL;
                if (mp_blobs_open(s3_url, &all, &err) < 0 ||
                    MP_BLOBS(all)->del_prefix(all, s3_prefix, &err) < 0)
                        fprintf(stderr, "  cleaning %s: %s\n", s3_prefix, err.message);
                mp_blobs_close(all);
                mp_error_clear(&err);
                s3_prefix[0] = 0;
                return;
        }
        nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        tmp_dir[0] = 0;
}

/* file: names in a folder under the objects root, other than . and ..
 * s3: objects under the prefix sub + "/" (all of this case's objects for ""). */
static int count_entries(const char *sub) {
        char path[4600];
        DIR *d;
        struct dirent *de;
        int n = 0;

        if (backend == BACKEND_S3) {
                struct mp_error err = { 0 };
                struct mp_blobs *b = NULL;
                size_t count = 0;
                snprintf(path, sizeof(path), "%s%s", sub, *sub ? "/" : "");
                if (mp_blobs_open(cur_url, &b, &err) < 0 || mp_blobs_s3_count(b, path, &count, &err) < 0) {
                        fprintf(stderr, "  counting %s: %s\n", path, err.message);
                        count = (size_t) -1;
                }
                mp_blobs_close(b);
                mp_error_clear(&err);
                return (int) count;
        }
        snprintf(path, sizeof(path), "%s/data/objects/%s", tmp_dir, sub);
        d = opendir(path);
        if (!d)
                return -1;
        while ((de = readdir(d)))
                n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        closedir(d);
        return n;
}

TEST(key_rules) {
        char long_key[600];

        CHECK(mp_blobs_key_valid("tasks/0b7a/result.json"));
        CHECK(mp_blobs_key_valid("a"));
        CHECK(mp_blobs_key_valid("a.b_c-D9/.hidden/x..y"));
        CHECK(!mp_blobs_key_valid(NULL));
        CHECK(!mp_blobs_key_valid(""));
        CHECK(!mp_blobs_key_valid("../x"));
        CHECK(!mp_blobs_key_valid("a/../x"));
        CHECK(!mp_blobs_key_valid("a/.."));
        CHECK(!mp_blobs_key_valid(".."));
        CHECK(!mp_blobs_key_valid("."));
        CHECK(!mp_blobs_key_valid("/abs"));
        CHECK(!mp_blobs_key_valid("a//b"));
        CHECK(!mp_blobs_key_valid("a/./b"));
        CHECK(!mp_blobs_key_valid("a/"));
        CHECK(!mp_blobs_key_valid("a b"));
        CHECK(!mp_blobs_key_valid("a\\b"));
        CHECK(!mp_blobs_key_valid("caf\xc3\xa9"));
        CHECK(!mp_blobs_key_valid("~tmp.x"));
        memset(long_key, 'a', sizeof(long_key));
        long_key[512] = 0;
        CHECK(mp_blobs_key_valid(long_key)); /* one segment of 512 bytes: valid by the rules */
        for (int i = 100; i < 512; i += 100)
                long_key[i] = '/';
        CHECK(mp_blobs_key_valid(long_key));
        long_key[512] = 'a';
        long_key[513] = 0;
        CHECK(!mp_blobs_key_valid(long_key));
}

TEST(open_bad_urls) {
        struct mp_error err = { 0 };
        struct mp_blobs *b = NULL;

        CHECK_INT(mp_blobs_open("s4://bucket", &b, &err), ==, -EPROTONOSUPPORT);
        CHECK(strstr(err.message, "s4") != NULL);
        CHECK_INT(mp_blobs_open("file:", &b, &err), ==, -EINVAL);
        CHECK_INT(mp_blobs_open("nothing", &b, &err), ==, -EINVAL);
        CHECK(b == NULL);
        mp_error_clear(&err);
}

TEST(put_get_del) {
        struct mp_blobs *b = fresh();
        struct mp_error err = { 0 };
        char *data = NULL;
        size_t len = 99;
        const char bin[] = { 'a', 0, 'b', '\n' };

        CHECK_STR(MP_BLOBS(b)->scheme, backend_name());
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t1/result.json", "{\"x\":1}", 7, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t1/result.json", 1024, &data, &len, &err), ==, 0);
        REQUIRE(data);
        CHECK_INT(len, ==, 7);
        CHECK_STR(data, "{\"x\":1}");
        free(data);
        data = NULL;

        /* binary, with a NUL inside, and empty objects */
        CHECK_INT(MP_BLOBS(b)->put(b, "bin", bin, sizeof(bin), &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "bin", 4, &data, &len, &err), ==, 0);
        CHECK_INT(len, ==, 4);
        CHECK(data && memcmp(data, bin, 4) == 0 && data[4] == 0);
        free(data);
        data = NULL;
        CHECK_INT(MP_BLOBS(b)->put(b, "empty", NULL, 0, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "empty", 0, &data, &len, &err), ==, 0);
        CHECK_INT(len, ==, 0);
        CHECK(data && data[0] == 0);
        free(data);
        data = NULL;

        /* past max */
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t1/result.json", 6, &data, &len, &err), ==, -EFBIG);
        CHECK(data == NULL);
        CHECK(strstr(err.message, "tasks/t1/result.json") != NULL);

        /* missing */
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t2/result.json", 1024, &data, &len, &err), ==, -ENOENT);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t1/result.json/x", 1024, &data, &len, &err), ==, -ENOENT);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t1", 1024, &data, &len, &err), ==, -ENOENT); /* a folder */
        CHECK(data == NULL);

        /* delete: gone, and deleting again is fine */
        CHECK_INT(MP_BLOBS(b)->del(b, "tasks/t1/result.json", &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t1/result.json", 1024, &data, &len, &err), ==, -ENOENT);
        CHECK_INT(MP_BLOBS(b)->del(b, "tasks/t1/result.json", &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->del(b, "never/was", &err), ==, 0);
        mp_error_clear(&err);
        done(b);
}

TEST(bad_keys_refused) {
        struct mp_blobs *b = fresh();
        struct mp_error err = { 0 };
        const char *bad[] = { "../x", "/abs", "a//b", "a/./b", "a/../../etc/passwd", "", "a/" };
        char *data = NULL;
        size_t len;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                mp_error_clear(&err);
                CHECK_INT(MP_BLOBS(b)->put(b, bad[i], "x", 1, &err), ==, -EINVAL);
                CHECK(strstr(err.message, "key") != NULL);
                CHECK_INT(MP_BLOBS(b)->get(b, bad[i], 10, &data, &len, &err), ==, -EINVAL);
                CHECK_INT(MP_BLOBS(b)->del(b, bad[i], &err), ==, -EINVAL);
        }
        CHECK(data == NULL);
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "../", &err), ==, -EINVAL);
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "/", &err), ==, -EINVAL);
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "", &err), ==, -EINVAL);
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "tasks", &err), ==, -EINVAL); /* no trailing '/' */
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "a//", &err), ==, -EINVAL);
        /* nothing was written outside (or inside) the root */
        CHECK_INT(count_entries(""), ==, 0);
        if (backend == BACKEND_FILE)
                CHECK_INT(count_entries("../.."), ==, 1); /* the temporary folder holds only data/ */
        mp_error_clear(&err);
        done(b);
}

TEST(overwrite_is_atomic) {
        struct mp_blobs *b = fresh();
        struct mp_error err = { 0 };
        char *data = NULL;
        size_t len;

        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t/logs.txt", "first version", 13, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t/logs.txt", "2nd", 3, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t/logs.txt", 100, &data, &len, &err), ==, 0);
        CHECK_INT(len, ==, 3);
        CHECK_STR(data, "2nd");
        free(data);
        /* no temporary file is left behind */
        CHECK_INT(count_entries("tasks/t"), ==, 1);
        /* a key cannot replace a folder of objects, nor nest under an object (files only:
         * S3 has no folders, "a" and "a/b" are two independent keys there) */
        if (backend == BACKEND_FILE) {
                CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t", "x", 1, &err), <, 0);
                CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t/logs.txt/inner", "x", 1, &err), <, 0);
                CHECK_INT(count_entries("tasks/t"), ==, 1);
        }
        mp_error_clear(&err);
        done(b);
}

/* Readers racing a writer that alternates two sizes see one whole version or the other. */
static int race_rounds;
static struct mp_blobs *race_b;
static int race_bad, race_torn;

static void *race_writer(void *arg) {
        static char big[65536];
        (void) arg;
        memset(big, 'B', sizeof(big));
        for (int i = 0; i < race_rounds; i++) {
                if (i % 2)
                        MP_BLOBS(race_b)->put(race_b, "race/obj", big, sizeof(big), NULL);
                else
                        MP_BLOBS(race_b)->put(race_b, "race/obj", "small", 5, NULL);
        }
        return NULL;
}

static bool all_b(const char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != 'B')
                        return false;
        return true;
}

static void *race_reader(void *arg) {
        (void) arg;
        for (int i = 0; i < race_rounds; i++) {
                char *data = NULL;
                size_t len = 0;
                struct mp_error err = { 0 };
                if (MP_BLOBS(race_b)->get(race_b, "race/obj", 1 << 20, &data, &len, &err) < 0) {
                        if (__atomic_add_fetch(&race_bad, 1, __ATOMIC_RELAXED) <= 3)
                                fprintf(stderr, "  reader: %s\n", err.message);
                        mp_error_clear(&err);
                        continue;
                }
                bool whole = (len == 5 && memcmp(data, "small", 5) == 0) ||
                             (len == 65536 && all_b(data, len));
                if (!whole && backend == BACKEND_S3 &&
                    (all_b(data, len) || (len < 5 && memcmp(data, "small", len) == 0))) {
                        /* s3rver writes a new version over the file it serves (AWS S3
                         * swaps versions whole), so there a read may end early; what our
                         * client owns is that the bytes all come from one version, which
                         * is still checked: a body mixed across threads fails. */
                        __atomic_add_fetch(&race_torn, 1, __ATOMIC_RELAXED);
                } else if (!whole)
                        if (__atomic_add_fetch(&race_bad, 1, __ATOMIC_RELAXED) <= 3)
                                fprintf(stderr, "  reader: a partial object of %zu bytes\n", len);
                free(data);
        }
        return NULL;
}

TEST(readers_never_see_a_partial_object) {
        pthread_t w, r[3];

        /* s3rver serves one request at a time: fewer rounds there. */
        race_rounds = backend == BACKEND_S3 ? 60 : 300;
        race_b = fresh();
        race_bad = race_torn = 0;
        REQUIRE(MP_BLOBS(race_b)->put(race_b, "race/obj", "small", 5, NULL) == 0);
        pthread_create(&w, NULL, race_writer, NULL);
        for (int i = 0; i < 3; i++)
                pthread_create(&r[i], NULL, race_reader, NULL);
        pthread_join(w, NULL);
        for (int i = 0; i < 3; i++)
                pthread_join(r[i], NULL);
        CHECK_INT(race_bad, ==, 0);
        if (race_torn)
                fprintf(stderr, "  note: %d of %d reads got a truncated version: this S3 server does "
                        "not replace objects atomically (s3rver does not; AWS S3 does)\n",
                        race_torn, 3 * race_rounds);
        CHECK_INT(count_entries("race"), ==, 1);
        done(race_b);
}

TEST(del_prefix) {
        struct mp_blobs *b = fresh();
        struct mp_error err = { 0 };
        char *data = NULL;
        size_t len;

        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t1/result.json", "1", 1, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t1/artifacts/plot.png", "png", 3, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t1/artifacts/deep/er/x", "x", 1, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t10/result.json", "10", 2, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t2/result.json", "2", 1, &err), ==, 0);

        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "tasks/t1/", &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t1/result.json", 10, &data, &len, &err), ==, -ENOENT);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t1/artifacts/plot.png", 10, &data, &len, &err), ==, -ENOENT);
        /* a sibling whose name starts the same is not under the prefix */
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t10/result.json", 10, &data, &len, &err), ==, 0);
        CHECK_STR(data, "10");
        free(data);
        data = NULL;
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t2/result.json", 10, &data, &len, &err), ==, 0);
        free(data);
        data = NULL;
        /* a missing prefix is not an error; a put after the delete works */
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "tasks/t1/", &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "nothing/here/", &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t1/result.json", "again", 5, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "tasks/", &err), ==, 0);
        CHECK_INT(count_entries(""), ==, 0);
        mp_error_clear(&err);
        done(b);
}

TEST(reopen_keeps_objects) {
        struct mp_blobs *b = fresh();
        struct mp_error err = { 0 };
        char url[8400], *data = NULL;
        size_t len;

        CHECK_INT(MP_BLOBS(b)->put(b, "keep/me", "kept", 4, &err), ==, 0);
        mp_blobs_close(b);
        if (backend == BACKEND_FILE)
                snprintf(url, sizeof(url), "file://%s/data/objects", tmp_dir);
        else
                snprintf(url, sizeof(url), "%s", cur_url);
        b = NULL;
        CHECK_INT(mp_blobs_open(url, &b, &err), ==, 0);
        REQUIRE(b);
        CHECK_INT(MP_BLOBS(b)->get(b, "keep/me", 10, &data, &len, &err), ==, 0);
        CHECK_STR(data, "kept");
        free(data);
        mp_error_clear(&err);
        done(b);
}

/* ---- s3: URLs refused at open, before any request ---- */

/* A loopback port nothing listens on (bound, then closed). */
static int closed_port(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

        if (fd < 0 || bind(fd, (struct sockaddr *) &a, sizeof(a)) < 0 ||
            getsockname(fd, (struct sockaddr *) &a, &len) < 0)
                return -1;
        port = ntohs(a.sin_port);
        close(fd);
        return port;
}

TEST(s3_open_bad_urls) {
        struct mp_error err = { 0 };
        struct mp_blobs *b = NULL;
        const char *bad[] = {
                "s3://",                                   /* no bucket */
                "s3://Bad_Bucket?endpoint=http://127.0.0.1:1",
                "s3://ab",                                 /* too short */
                "s3://bucket/some/path",                   /* a path, not prefix= */
                "s3://bucket?endpoint=ftp://127.0.0.1:21",
                "s3://bucket?endpoint=http://127.0.0.1:1/path",
                "s3://bucket?endpoint=not%20a%20url",
                "s3://bucket?region=US_EAST",
                "s3://bucket?nope=1",                      /* a typo is not ignored */
                "s3://bucket?region=us-east-1&region=eu-west-1",
                "s3://bucket?path_style=maybe",
                "s3://bucket?prefix=../up/",
                "s3://bucket?prefix=a//b/",
        };
        const char *saved_ak = getenv("AWS_ACCESS_KEY_ID"), *saved_sk = getenv("AWS_SECRET_ACCESS_KEY");
        char *ak = saved_ak ? strdup(saved_ak) : NULL, *sk = saved_sk ? strdup(saved_sk) : NULL;
        char url[256], port_s[32];
        int64_t t0;
        int port;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                mp_error_clear(&err);
                CHECK_INT(mp_blobs_open(bad[i], &b, &err), ==, -EINVAL);
                if (!strstr(err.message, "bucket") && !strstr(err.message, "URL"))
                        CHECK_FAIL("%s: the error names neither the URL nor the bucket: %s", bad[i],
                                   err.message);
                CHECK(b == NULL);
        }

        /* no credentials: a sentence naming the variables, before any request */
        unsetenv("AWS_ACCESS_KEY_ID");
        unsetenv("AWS_SECRET_ACCESS_KEY");
        mp_error_clear(&err);
        CHECK_INT(mp_blobs_open("s3://bucket?endpoint=http://127.0.0.1:1", &b, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "AWS_ACCESS_KEY_ID") != NULL);

        /* nothing listening: retried, then 503 "unavailable" naming the endpoint, in bounded time */
        setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
        setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", 1);
        port = closed_port();
        REQUIRE(port > 0);
        snprintf(url, sizeof(url), "s3://bucket?endpoint=http://127.0.0.1:%d&region=us-east-1", port);
        snprintf(port_s, sizeof(port_s), "127.0.0.1:%d", port);
        mp_error_clear(&err);
        t0 = mp_mono_ms();
        CHECK_INT(mp_blobs_open(url, &b, &err), ==, -EAGAIN);
        CHECK_INT(mp_mono_ms() - t0, <, 10000);
        CHECK_INT(mp_mono_ms() - t0, >=, 1000); /* it did back off and retry */
        CHECK_INT(err.status, ==, 503);
        CHECK_STR(err.code, "unavailable");
        CHECK(strstr(err.message, port_s) != NULL);
        CHECK(strstr(err.message, "5 attempts") != NULL);
        CHECK(b == NULL);

        if (ak)
                setenv("AWS_ACCESS_KEY_ID", ak, 1);
        else
                unsetenv("AWS_ACCESS_KEY_ID");
        if (sk)
                setenv("AWS_SECRET_ACCESS_KEY", sk, 1);
        else
                unsetenv("AWS_SECRET_ACCESS_KEY");
        free(ak);
        free(sk);
        mp_error_clear(&err);
}

/* ---- s3: an independent client (boto3) ---- */

static char readback_script[PATH_MAX];

/* tests/services/s3_readback.py: from the working directory (tests/run.sh runs from the
 * repository), from the source path the compiler saw, or from the build folder's parent. */
static const char *find_readback(void) {
        char exe[PATH_MAX], *slash;
        ssize_t n;
        const char *rel = "tests/services/s3_readback.py";

        if (access(rel, R_OK) == 0)
                return rel;
        snprintf(readback_script, sizeof(readback_script), "%s", __FILE__);
        if ((slash = strrchr(readback_script, '/'))) {
                snprintf(slash, sizeof(readback_script) - (size_t) (slash - readback_script),
                         "/../services/s3_readback.py");
                if (access(readback_script, R_OK) == 0)
                        return readback_script;
        }
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        if (n > 0) {
                exe[n] = 0;
                for (int up = 0; up < 4 && (slash = strrchr(exe, '/')); up++) /* BUILD/tests/unit/x */
                        *slash = 0;
                snprintf(readback_script, sizeof(readback_script), "%s/%s", exe, rel);
                if (access(readback_script, R_OK) == 0)
                        return readback_script;
        }
        return NULL;
}

/* Run s3_readback.py URL VERB KEY [FILE]; its exit status. */
static int readback(const char *verb, const char *key, const char *file) {
        const char *script = find_readback();
        pid_t pid;
        int st;

        if (!script) {
                CHECK_FAIL("tests/services/s3_readback.py not found (run from the repository)");
                return -1;
        }
        pid = fork();
        if (pid == 0) {
                execl("/usr/bin/python3", "python3", script, cur_url, verb, key, file, (char *) NULL);
                _exit(127);
        }
        if (pid < 0 || waitpid(pid, &st, 0) < 0)
                return -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Deterministic bytes that are not a repeating pattern (a misplaced part shows). */
static void fill(char *p, size_t n, uint32_t seed) {
        uint32_t x = seed;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                p[i] = (char) (x >> 24);
        }
}

static int write_file(const char *path, const void *p, size_t n) {
        FILE *f = fopen(path, "wbe");
        size_t w;

        if (!f)
                return -1;
        w = fwrite(p, 1, n, f);
        return fclose(f) == 0 && w == n ? 0 : -1;
}

TEST(s3_multipart_20mib_reads_back) {
        const size_t n = 20u << 20; /* > the single-PUT limit: three parts */
        struct mp_blobs *b = fresh();
        struct mp_error err = { 0 };
        char *big = malloc(n), *data = NULL, tmpf[] = "/tmp/mp-test-s3-XXXXXX";
        size_t len = 0;
        int fd;

        REQUIRE(big);
        fill(big, n, 12345);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t/artifacts/big.bin", big, n, &err), ==, 0);
        if (err.message[0])
                fprintf(stderr, "  put: %s\n", err.message);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t/artifacts/big.bin", n, &data, &len, &err), ==, 0);
        CHECK_INT(len, ==, n);
        CHECK(data && memcmp(data, big, n) == 0);
        free(data);
        data = NULL;
        /* one byte under: refused without being read */
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t/artifacts/big.bin", n - 1, &data, &len, &err), ==, -EFBIG);
        CHECK_INT(err.status, ==, 413);
        CHECK(data == NULL);
        CHECK_INT(count_entries("tasks/t"), ==, 1); /* no part left visible as an object */

        /* boto3 reads the same bytes */
        fd = mkstemp(tmpf);
        REQUIRE(fd >= 0);
        close(fd);
        CHECK_INT(readback("get", "tasks/t/artifacts/big.bin", tmpf), ==, 0);
        CHECK_INT(mp_read_file(tmpf, n + 1, &data, &len), ==, 0);
        CHECK_INT(len, ==, n);
        CHECK(data && memcmp(data, big, n) == 0);
        free(data);
        unlink(tmpf);
        free(big);
        mp_error_clear(&err);
        done(b);
}

TEST(s3_independent_client_agrees) {
        struct mp_blobs *b = fresh();
        struct mp_error err = { 0 };
        char small[3000], *data = NULL, tmpf[] = "/tmp/mp-test-s3-XXXXXX";
        size_t len = 0;
        int fd;

        fill(small, sizeof(small), 7);
        small[10] = 0; /* binary, with NUL bytes */
        fd = mkstemp(tmpf);
        REQUIRE(fd >= 0);
        close(fd);

        /* what MecaPy stores, boto3 reads byte for byte (under the URL's prefix) */
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t1/result.json", small, sizeof(small), &err), ==, 0);
        CHECK_INT(readback("get", "tasks/t1/result.json", tmpf), ==, 0);
        CHECK_INT(mp_read_file(tmpf, 1 << 20, &data, &len), ==, 0);
        CHECK_INT(len, ==, sizeof(small));
        CHECK(data && memcmp(data, small, sizeof(small)) == 0);
        free(data);
        data = NULL;

        /* what boto3 stores, MecaPy reads */
        fill(small, sizeof(small), 99);
        REQUIRE(write_file(tmpf, small, sizeof(small)) == 0);
        CHECK_INT(readback("put", "tasks/t1/logs.txt", tmpf), ==, 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t1/logs.txt", sizeof(small), &data, &len, &err), ==, 0);
        CHECK_INT(len, ==, sizeof(small));
        CHECK(data && memcmp(data, small, sizeof(small)) == 0);
        free(data);

        /* a delete by MecaPy is seen by boto3 */
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "tasks/t1/", &err), ==, 0);
        CHECK_INT(readback("get", "tasks/t1/result.json", tmpf), ==, 3);
        unlink(tmpf);
        mp_error_clear(&err);
        done(b);
}

/* ---- s3: the server goes away and comes back ----
 * A TCP relay between the store and the S3 server: "down" closes the listening socket and
 * cuts every open connection (connections refused, kept-alive ones broken), "up" listens
 * again on the same port. */
struct relay {
        struct sockaddr_in upstream;
        int port, listen_fd;
        pthread_t acceptor;
        pthread_mutex_t lock;
        int conns[128];
        int n_conns, running;
};
static struct relay relay = { .lock = PTHREAD_MUTEX_INITIALIZER, .listen_fd = -1 };

static void relay_forget(int fd) {
        pthread_mutex_lock(&relay.lock);
        for (int i = 0; i < relay.n_conns; i++)
                if (relay.conns[i] == fd) {
                        relay.conns[i] = relay.conns[--relay.n_conns];
                        break;
                }
        relay.running--;
        pthread_mutex_unlock(&relay.lock);
}

static void *relay_pump(void *arg) {
        int c = (int) (intptr_t) arg, u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        char buf[65536];

        if (u >= 0 && connect(u, (struct sockaddr *) &relay.upstream, sizeof(relay.upstream)) == 0)
                for (;;) {
                        struct pollfd p[2] = { { .fd = c, .events = POLLIN }, { .fd = u, .events = POLLIN } };
                        int from, to;
                        ssize_t n;
                        if (poll(p, 2, -1) < 0)
                                break;
                        from = (p[0].revents & (POLLIN | POLLHUP | POLLERR)) ? c : u;
                        to = from == c ? u : c;
                        n = read(from, buf, sizeof(buf));
                        if (n <= 0 || mp_write_all(to, buf, (size_t) n) < 0)
                                break;
                }
        relay_forget(c);
        close(c);
        if (u >= 0)
                close(u);
        return NULL;
}

static void *relay_accept(void *arg) {
        (void) arg;
        for (;;) {
                int c = accept4(relay.listen_fd, NULL, NULL, SOCK_CLOEXEC);
                pthread_t t;
                if (c < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        return NULL; /* the listening socket was shut down */
                }
                pthread_mutex_lock(&relay.lock);
                if (relay.n_conns < (int) ELEMENTSOF(relay.conns))
                        relay.conns[relay.n_conns++] = c;
                relay.running++;
                pthread_mutex_unlock(&relay.lock);
                if (pthread_create(&t, NULL, relay_pump, (void *) (intptr_t) c) != 0) {
                        relay_forget(c);
                        close(c);
                } else
                        pthread_detach(t);
        }
}

static int relay_up(void) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                 .sin_port = htons((uint16_t) relay.port) };
        socklen_t len = sizeof(a);
        int one = 1;

        relay.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (relay.listen_fd < 0)
                return -1;
        setsockopt(relay.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(relay.listen_fd, (struct sockaddr *) &a, sizeof(a)) < 0 ||
            listen(relay.listen_fd, 64) < 0 ||
            getsockname(relay.listen_fd, (struct sockaddr *) &a, &len) < 0)
                return -1;
        relay.port = ntohs(a.sin_port);
        return pthread_create(&relay.acceptor, NULL, relay_accept, NULL) == 0 ? 0 : -1;
}

static void relay_down(void) {
        shutdown(relay.listen_fd, SHUT_RDWR);
        pthread_join(relay.acceptor, NULL);
        close(relay.listen_fd);
        relay.listen_fd = -1;
        pthread_mutex_lock(&relay.lock);
        for (int i = 0; i < relay.n_conns; i++)
                shutdown(relay.conns[i], SHUT_RDWR);
        pthread_mutex_unlock(&relay.lock);
        for (int i = 0; i < 500; i++) { /* the pumps end on their own */
                int left;
                pthread_mutex_lock(&relay.lock);
                left = relay.running;
                pthread_mutex_unlock(&relay.lock);
                if (!left)
                        break;
                usleep(10000);
        }
}

TEST(s3_unavailable_then_back) {
        const char *ep = strstr(s3_url, "endpoint=http://");
        char host[64], url[8400], param[96], port_s[32], *data = NULL;
        struct mp_error err = { 0 };
        struct mp_blobs *b = NULL;
        size_t len = 0, hl;
        long up_port;
        int64_t t0;

        /* the relay needs the server's address: endpoint=http://IP:PORT */
        REQUIRE(ep);
        ep += strlen("endpoint=http://");
        hl = strcspn(ep, ":");
        REQUIRE(hl < sizeof(host) && ep[hl] == ':');
        memcpy(host, ep, hl);
        host[hl] = 0;
        {
                char p[16];
                size_t pl = strcspn(ep + hl + 1, "&/");
                REQUIRE(pl < sizeof(p));
                memcpy(p, ep + hl + 1, pl);
                p[pl] = 0;
                REQUIRE(mp_parse_long(p, 1, 65535, &up_port) == 0);
        }
        relay.upstream = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons((uint16_t) up_port) };
        REQUIRE(inet_pton(AF_INET, host, &relay.upstream.sin_addr) == 1);
        relay.port = 0;
        REQUIRE(relay_up() == 0);

        /* the same bucket, through the relay, in a fresh prefix */
        {
                char id[MP_ID_LEN + 1];
                mp_id_new(id);
                snprintf(s3_prefix, sizeof(s3_prefix), "mp-test-%s/", id);
        }
        snprintf(url, sizeof(url), "s3://%.*s?endpoint=http://127.0.0.1:%d&region=us-east-1&path_style=1",
                 (int) strcspn(s3_url + 5, "?"), s3_url + 5, relay.port);
        snprintf(param, sizeof(param), "prefix=%s", s3_prefix);
        s3_url_with(cur_url, sizeof(cur_url), url, param);
        snprintf(port_s, sizeof(port_s), "127.0.0.1:%d", relay.port);
        CHECK_INT(mp_blobs_open(cur_url, &b, &err), ==, 0);
        REQUIRE(b);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t/result.json", "before", 6, &err), ==, 0);

        /* down: the put fails after its retries, as 503 "unavailable", in bounded time */
        relay_down();
        t0 = mp_mono_ms();
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t/result.json", "during", 6, &err), ==, -EAGAIN);
        CHECK_INT(mp_mono_ms() - t0, <, 10000);
        CHECK_INT(mp_mono_ms() - t0, >=, 1000);
        CHECK_INT(err.status, ==, 503);
        CHECK_STR(err.code, "unavailable");
        CHECK(strstr(err.message, port_s) != NULL);
        mp_error_clear(&err);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t/result.json", 100, &data, &len, &err), ==, -EAGAIN);
        CHECK_INT(err.status, ==, 503);
        CHECK(data == NULL);
        mp_error_clear(&err);

        /* back: the next put works on the same store, and the failed one changed nothing */
        REQUIRE(relay_up() == 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t/result.json", 100, &data, &len, &err), ==, 0);
        CHECK_STR(data, "before");
        free(data);
        data = NULL;
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t/result.json", "after", 5, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->get(b, "tasks/t/result.json", 100, &data, &len, &err), ==, 0);
        CHECK_STR(data, "after");
        free(data);
        mp_blobs_close(b);
        relay_down();
        mp_error_clear(&err);
        done(NULL);
}

/* ---- the runner ---- */

/* list: every key under a prefix once, relative to the store (the URL's prefix= left
 * out), nothing of a sibling prefix; a stop is returned as it is. */
struct listed {
        char keys[8][64];
        int n, stop_after;
};

static int list_seen(void *ud, const char *key) {
        struct listed *l = ud;
        if (l->n < 8)
                snprintf(l->keys[l->n], sizeof(l->keys[0]), "%s", key);
        l->n++;
        return l->stop_after && l->n == l->stop_after ? 7 : 0;
}

static bool was_listed(const struct listed *l, const char *key) {
        for (int i = 0; i < l->n && i < 8; i++)
                if (!strcmp(l->keys[i], key))
                        return true;
        return false;
}

TEST(list) {
        struct mp_blobs *b = fresh();
        struct mp_error err = { 0 };
        struct listed l = { 0 };

        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t1/result.json", "1", 1, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t1/artifacts/0", "a", 1, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t2/logs.txt", "l", 1, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasksx/t3/result.json", "x", 1, &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->list(b, "tasks/", list_seen, &l, &err), ==, 0);
        CHECK_INT(l.n, ==, 3);
        CHECK(was_listed(&l, "tasks/t1/result.json"));
        CHECK(was_listed(&l, "tasks/t1/artifacts/0"));
        CHECK(was_listed(&l, "tasks/t2/logs.txt"));
        /* a stop ends the listing with fn's value */
        l = (struct listed) { .stop_after = 2 };
        CHECK_INT(MP_BLOBS(b)->list(b, "tasks/", list_seen, &l, &err), ==, 7);
        CHECK_INT(l.n, ==, 2);
        /* a prefix with nothing under it lists nothing; a bad one is refused */
        l = (struct listed) { 0 };
        CHECK_INT(MP_BLOBS(b)->list(b, "nothing/", list_seen, &l, &err), ==, 0);
        CHECK_INT(l.n, ==, 0);
        CHECK_INT(MP_BLOBS(b)->list(b, "../", list_seen, &l, &err), ==, -EINVAL);
        CHECK_INT(MP_BLOBS(b)->list(b, "tasks", list_seen, &l, &err), ==, -EINVAL);
        mp_error_clear(&err);
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "tasks/", &err), ==, 0);
        CHECK_INT(MP_BLOBS(b)->del_prefix(b, "tasksx/", &err), ==, 0);
        mp_error_clear(&err);
        done(b);
}

enum on { ANY, BOTH, S3_ONLY };
struct bcase {
        const char *name;
        void (*fn)(void);
        enum on on;
};

static const struct bcase cases[] = {
        { "key_rules", key_rules, ANY },
        { "open_bad_urls", open_bad_urls, ANY },
        { "s3_open_bad_urls", s3_open_bad_urls, ANY },
        { "put_get_del", put_get_del, BOTH },
        { "bad_keys_refused", bad_keys_refused, BOTH },
        { "overwrite_is_atomic", overwrite_is_atomic, BOTH },
        { "readers_never_see_a_partial_object", readers_never_see_a_partial_object, BOTH },
        { "del_prefix", del_prefix, BOTH },
        { "reopen_keeps_objects", reopen_keeps_objects, BOTH },
        { "multipart_20mib_reads_back", s3_multipart_20mib_reads_back, S3_ONLY },
        { "independent_client_agrees", s3_independent_client_agrees, S3_ONLY },
        { "unavailable_then_back", s3_unavailable_then_back, S3_ONLY },
        { "list", list, BOTH },
};

int check_failed_now;

/* Like CHECK_MAIN, with each storing case run once per backend ("<case>_file",
 * "<case>_s3") and the S3 runs skipped, and listed, when no S3 server is given. */
int main(int argc, char **argv) {
        int passed = 0, failed = 0, skipped = 0;

        s3_url = getenv("MECAPY_TEST_S3_URL");
        if (s3_url && !*s3_url)
                s3_url = NULL;
        if (s3_url && strstr(s3_url, "prefix=")) {
                fprintf(stderr, "MECAPY_TEST_S3_URL must not have a prefix= (each case makes its own)\n");
                return 2;
        }
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (int be = BACKEND_FILE; be <= BACKEND_S3; be++) {
                        char name[128];
                        const struct bcase *c = &cases[i];
                        if (c->on == ANY && be == BACKEND_S3)
                                continue;
                        if (c->on == S3_ONLY && be == BACKEND_FILE)
                                continue;
                        snprintf(name, sizeof(name), "%s%s", c->name,
                                 c->on == ANY ? "" : be == BACKEND_S3 ? "_s3" : "_file");
                        if (argc > 1 && !strstr(name, argv[1]))
                                continue;
                        if (be == BACKEND_S3 && !s3_url) {
                                printf("skip %s (set MECAPY_TEST_S3_URL; see tests/services/s3.sh)\n", name);
                                skipped++;
                                continue;
                        }
                        backend = (enum backend) be;
                        check_failed_now = 0;
                        c->fn();
                        printf("%s %s\n", check_failed_now ? "FAIL" : "ok  ", name);
                        fflush(stdout);
                        if (check_failed_now)
                                failed++;
                        else
                                passed++;
                }
        backend = BACKEND_FILE;
        if (skipped)
                printf("%d skipped\n", skipped);
        printf("%d passed, %d failed\n", passed, failed);
        return failed ? 1 : 0;
}
