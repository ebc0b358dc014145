/* Unit tests of blobs/ through its port (the file: backend), in a temporary folder. */
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"

#include "base/util.h"
#include "blobs/blobs.h"

static char tmp_dir[4096];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
        (void) st;
        (void) flag;
        (void) f;
        return remove(path);
}

/* A fresh store in a new temporary folder (its objects folder not created yet). */
static struct mp_blobs *fresh(void) {
        const char *base = getenv("TMPDIR");
        struct mp_error err = { 0 };
        struct mp_blobs *b = NULL;
        char url[4200];
        int r;

        snprintf(tmp_dir, sizeof(tmp_dir), "%s/mp-test-blobs-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmp_dir)) {
                perror("mkdtemp");
                exit(2);
        }
        snprintf(url, sizeof(url), "file:%s/data/objects", tmp_dir);
        r = mp_blobs_open(url, &b, &err);
        if (r < 0) {
                fprintf(stderr, "open %s: %d %s\n", url, r, err.message);
                exit(2);
        }
        return b;
}

static void done(struct mp_blobs *b) {
        mp_blobs_close(b);
        nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        tmp_dir[0] = 0;
}

/* Names in a folder under the objects root, other than . and .. */
static int count_entries(const char *sub) {
        char path[4600];
        DIR *d;
        struct dirent *de;
        int n = 0;

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

        CHECK_STR(MP_BLOBS(b)->scheme, "file");
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
        /* a key cannot replace a folder of objects, nor nest under an object */
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t", "x", 1, &err), <, 0);
        CHECK_INT(MP_BLOBS(b)->put(b, "tasks/t/logs.txt/inner", "x", 1, &err), <, 0);
        CHECK_INT(count_entries("tasks/t"), ==, 1);
        mp_error_clear(&err);
        done(b);
}

/* Readers racing a writer that alternates two sizes see one whole version or the other. */
#define RACE_ROUNDS 300
static struct mp_blobs *race_b;
static int race_bad;

static void *race_writer(void *arg) {
        static char big[65536];
        (void) arg;
        memset(big, 'B', sizeof(big));
        for (int i = 0; i < RACE_ROUNDS; i++) {
                if (i % 2)
                        MP_BLOBS(race_b)->put(race_b, "race/obj", big, sizeof(big), NULL);
                else
                        MP_BLOBS(race_b)->put(race_b, "race/obj", "small", 5, NULL);
        }
        return NULL;
}

static void *race_reader(void *arg) {
        (void) arg;
        for (int i = 0; i < RACE_ROUNDS; i++) {
                char *data = NULL;
                size_t len = 0;
                if (MP_BLOBS(race_b)->get(race_b, "race/obj", 1 << 20, &data, &len, NULL) < 0) {
                        __atomic_add_fetch(&race_bad, 1, __ATOMIC_RELAXED);
                        continue;
                }
                if (!((len == 5 && memcmp(data, "small", 5) == 0) ||
                      (len == 65536 && data[0] == 'B' && data[65535] == 'B')))
                        __atomic_add_fetch(&race_bad, 1, __ATOMIC_RELAXED);
                free(data);
        }
        return NULL;
}

TEST(readers_never_see_a_partial_object) {
        pthread_t w, r[3];

        race_b = fresh();
        race_bad = 0;
        REQUIRE(MP_BLOBS(race_b)->put(race_b, "race/obj", "small", 5, NULL) == 0);
        pthread_create(&w, NULL, race_writer, NULL);
        for (int i = 0; i < 3; i++)
                pthread_create(&r[i], NULL, race_reader, NULL);
        pthread_join(w, NULL);
        for (int i = 0; i < 3; i++)
                pthread_join(r[i], NULL);
        CHECK_INT(race_bad, ==, 0);
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
        char url[4200], *data = NULL;
        size_t len;

        CHECK_INT(MP_BLOBS(b)->put(b, "keep/me", "kept", 4, &err), ==, 0);
        mp_blobs_close(b);
        snprintf(url, sizeof(url), "file://%s/data/objects", tmp_dir);
        b = NULL;
        CHECK_INT(mp_blobs_open(url, &b, &err), ==, 0);
        REQUIRE(b);
        CHECK_INT(MP_BLOBS(b)->get(b, "keep/me", 10, &data, &len, &err), ==, 0);
        CHECK_STR(data, "kept");
        free(data);
        mp_error_clear(&err);
        done(b);
}

static const struct check_case cases[] = {
        CASE(key_rules),
        CASE(open_bad_urls),
        CASE(put_get_del),
        CASE(bad_keys_refused),
        CASE(overwrite_is_atomic),
        CASE(readers_never_see_a_partial_object),
        CASE(del_prefix),
        CASE(reopen_keeps_objects),
};

CHECK_MAIN(cases)
