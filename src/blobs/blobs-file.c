/* blobs/: the "file:" backend. A key is a path relative to the root folder; every access
 * goes through the root's fd (openat and friends), and keys are checked first
 * (mp_blobs_key_valid), so no key reaches outside the root. We never create symlinks,
 * and the last component is opened with O_NOFOLLOW.
 *
 * put writes "~tmp.<random>" next to the object ('~' cannot appear in a key, so a temp
 * file never collides with an object), fsyncs it, renames it over the key and fsyncs
 * the folder: readers see the old object or the whole new one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/util.h"
#include "blobs/blobs-internal.h"

struct mp_blobs {
        struct mp_blobs_base base; /* first, for MP_BLOBS() */
        char *root;
        int root_fd;
};

static int io_fail(struct mp_error *err, int e, const char *what, const char *key) {
        if (e == ENAMETOOLONG)
                return mp_error_set(err, EINVAL, 422, "validation",
                                    "%s object '%s': a segment of the key is longer than the "
                                    "file system allows (255 bytes)", what, key);
        return mp_error_set(err, e, e == ENOENT ? 404 : 500, e == ENOENT ? "not_found" : "storage",
                            "%s object '%s': %s", what, key, strerror(e));
}

static int bad_key(struct mp_error *err, const char *key) {
        return mp_error_set(err, EINVAL, 422, "validation",
                            "object key '%.600s' is not valid: it must be 1 to %d bytes of "
                            "[A-Za-z0-9._-] segments joined by '/', with no empty, '.' or '..' "
                            "segment", key ? key : "(null)", MP_BLOBS_MAX_KEY);
}

static void file_close(struct mp_blobs *b) {
        if (!b)
                return;
        if (b->root_fd >= 0)
                close(b->root_fd);
        free(b->root);
        free(b);
}
static void file_closep(struct mp_blobs **b) {
        file_close(*b);
}

static int file_open(const char *url, struct mp_blobs **ret, struct mp_error *err) {
        _cleanup_(file_closep) struct mp_blobs *b = NULL;
        const char *path;
        int r;

        if (strncmp(url, "file:", 5) != 0)
                return mp_error_set(err, EINVAL, 500, "config", "objects URL '%s' is not file:", url);
        path = url + 5;
        if (strncmp(path, "//", 2) == 0) /* file:///abs/path */
                path += 2;
        if (!*path)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s' names no folder: write file:/path/to/objects",
                                    url);
        r = mp_mkdir_p(path, 0700);
        if (r < 0)
                return mp_error_set(err, -r, 500, "storage", "cannot create the objects folder %s: %s",
                                    path, strerror(-r));
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->base.ops = &mp_blobs_file_ops;
        b->root_fd = -1;
        b->root = strdup(path);
        if (!b->root)
                return -ENOMEM;
        b->root_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (b->root_fd < 0)
                return mp_error_set(err, errno, 500, "storage", "cannot open the objects folder %s: %s",
                                    path, strerror(errno));
        *ret = TAKE_PTR(b);
        return 0;
}

/* Create the folders of `dir` (a valid key) under the root. */
static int mkdirs_at(int root_fd, const char *dir) {
        char tmp[MP_BLOBS_MAX_KEY + 1];
        size_t n = strlen(dir);

        if (n >= sizeof(tmp))
                return -ENAMETOOLONG;
        memcpy(tmp, dir, n + 1);
        for (char *p = tmp;; p++) {
                if (*p == '/' || *p == 0) {
                        char c = *p;
                        *p = 0;
                        if (mkdirat(root_fd, tmp, 0700) < 0 && errno != EEXIST)
                                return -errno;
                        if (c == 0)
                                return 0;
                        *p = c;
                }
        }
}

/* Open the folder that will hold key (creating it), and point *ret_name at the last
 * segment of key. */
static int open_parent(struct mp_blobs *b, const char *key, const char **ret_name) {
        const char *slash = strrchr(key, '/');
        char dir[MP_BLOBS_MAX_KEY + 1];
        int fd;

        if (!slash) {
                fd = fcntl(b->root_fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return -errno;
                *ret_name = key;
                return fd;
        }
        memcpy(dir, key, (size_t) (slash - key));
        dir[slash - key] = 0;
        /* A del_prefix running at the same time may remove the folder between the mkdir and
         * the open: try again a few times. */
        for (int attempt = 0;; attempt++) {
                int r = mkdirs_at(b->root_fd, dir);
                if (r < 0)
                        return r;
                fd = openat(b->root_fd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0)
                        break;
                if (errno != ENOENT || attempt == 3)
                        return -errno;
        }
        *ret_name = slash + 1;
        return fd;
}

static int file_put(struct mp_blobs *b, const char *key, const void *data, size_t len,
                    struct mp_error *err) {
        _cleanup_close_ int dfd = -1, fd = -1;
        char tmp[8 + MP_ID_LEN + 1];
        const char *name;
        int r;

        if (!mp_blobs_key_valid(key))
                return bad_key(err, key);
        if (len && !data)
                return mp_error_set(err, EINVAL, 500, "storage", "storing object '%s': no data", key);
        dfd = open_parent(b, key, &name);
        if (dfd < 0)
                return io_fail(err, -dfd, "storing", key);

        memcpy(tmp, "~tmp.", 6);
        mp_id_new(tmp + 5);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return io_fail(err, errno, "storing", key);
        r = mp_write_all(fd, data, len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0) {
                int c = TAKE_FD(fd);
                if (close(c) < 0)
                        r = -errno;
        }
        if (r >= 0 && renameat(dfd, tmp, dfd, name) < 0)
                r = -errno;
        if (r < 0) {
                unlinkat(dfd, tmp, 0);
                if (r == -EISDIR)
                        return mp_error_set(err, EISDIR, 409, "conflict",
                                            "storing object '%s': the key is a folder of other "
                                            "objects", key);
                return io_fail(err, -r, "storing", key);
        }
        /* The rename is durable once the folder's entry is. */
        if (fsync(dfd) < 0)
                return io_fail(err, errno, "storing", key);
        return 0;
}

static int file_get(struct mp_blobs *b, const char *key, size_t max, char **ret, size_t *ret_len,
                    struct mp_error *err) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *data = NULL;
        struct stat st;
        size_t got = 0, alloc;

        if (!mp_blobs_key_valid(key))
                return bad_key(err, key);
        fd = openat(b->root_fd, key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return mp_error_set(err, ENOENT, 404, "not_found", "no object '%s'", key);
                return io_fail(err, errno, "reading", key);
        }
        if (fstat(fd, &st) < 0)
                return io_fail(err, errno, "reading", key);
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, ENOENT, 404, "not_found", "no object '%s' (it is a folder)", key);
        if ((uint64_t) st.st_size > max)
                return mp_error_set(err, EFBIG, 413, "too_large",
                                    "object '%s' is %jd bytes, more than the %zu allowed here", key,
                                    (intmax_t) st.st_size, max);
        /* The fd pins this version of the object: a put meanwhile renames a new file over
         * the name but does not change what we read. */
        alloc = (size_t) st.st_size + 1;
        data = malloc(alloc);
        if (!data)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, data + got, alloc - got);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return io_fail(err, errno, "reading", key);
                }
                if (n == 0)
                        break;
                got += (size_t) n;
                if (got == alloc) /* it grew: not one of ours, we never write in place */
                        return mp_error_set(err, EIO, 500, "storage",
                                            "object '%s' changed while it was read", key);
        }
        data[got] = 0;
        *ret = TAKE_PTR(data);
        if (ret_len)
                *ret_len = got;
        return 0;
}

static int file_del(struct mp_blobs *b, const char *key, struct mp_error *err) {
        if (!mp_blobs_key_valid(key))
                return bad_key(err, key);
        if (unlinkat(b->root_fd, key, 0) < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0;
                if (errno == EISDIR)
                        return mp_error_set(err, EISDIR, 409, "conflict",
                                            "deleting object '%s': the key is a folder of objects "
                                            "(delete it with its prefix '%s/')", key, key);
                return io_fail(err, errno, "deleting", key);
        }
        return 0;
}

/* Remove name (under dfd) and everything below it; missing is fine. */
static int rm_tree(int dfd, const char *name) {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d;
        struct dirent *de;
        int r = 0;

        if (fd < 0) {
                if (errno == ENOENT)
                        return 0;
                if (errno == ENOTDIR || errno == ELOOP) /* a file or a link: remove it alone */
                        return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
                return -errno;
        }
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -1; /* owned by d now */
        while ((errno = 0, de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
                        r = rm_tree(dirfd(d), de->d_name);
                else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
                        r = -errno;
                if (r < 0)
                        break;
        }
        if (r >= 0 && errno)
                r = -errno;
        closedir(d);
        if (r < 0)
                return r;
        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static int file_del_prefix(struct mp_blobs *b, const char *prefix, struct mp_error *err) {
        char dir[MP_BLOBS_MAX_KEY + 1];
        int r;

        if ((r = mp_blobs_prefix_dir(prefix, dir, err)) < 0)
                return r;
        r = rm_tree(b->root_fd, dir);
        if (r < 0)
                return io_fail(err, -r, "deleting the prefix of", prefix);
        return 0;
}

static int file_ping(struct mp_blobs *b, struct mp_error *err) {
        struct stat st;
        if (fstat(b->root_fd, &st) < 0 || st.st_nlink == 0 || faccessat(b->root_fd, ".", W_OK, 0) < 0)
                return mp_error_set(err, EIO, 503, "unavailable", "the object folder %s is gone or not writable",
                                    b->root);
        return 0;
}

struct walk {
        int (*fn)(void *ud, const char *key);
        void *ud;
        char key[MP_BLOBS_MAX_KEY + 1]; /* the folder being listed, then each object's key */
};

/* List the objects under the folder dfd (taken: closed here), whose key is w->key[0..len).
 * Temporary files ('~' cannot start a key segment) are in-flight puts: not objects. */
static int walk_dir(int dfd, struct walk *w, size_t len) {
        DIR *d = fdopendir(dfd);
        struct dirent *de;
        int r = 0;

        if (!d) {
                r = -errno;
                close(dfd);
                return r;
        }
        while (r == 0 && (errno = 0, de = readdir(d))) {
                size_t n = strlen(de->d_name);
                unsigned char type = de->d_type;
                struct stat st;

                if (de->d_name[0] == '.' || de->d_name[0] == '~' || len + 1 + n > MP_BLOBS_MAX_KEY)
                        continue;
                if (type == DT_UNKNOWN) {
                        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue; /* removed meanwhile */
                        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
                }
                w->key[len] = '/';
                memcpy(w->key + len + 1, de->d_name, n + 1);
                if (type == DT_DIR) {
                        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                r = walk_dir(sub, w, len + 1 + n);
                        else if (errno != ENOENT)
                                r = -errno;
                } else if (type == DT_REG)
                        r = w->fn(w->ud, w->key);
                w->key[len] = 0;
        }
        if (r == 0 && errno)
                r = -errno;
        closedir(d);
        return r;
}

static int file_list(struct mp_blobs *b, const char *prefix, int (*fn)(void *ud, const char *key), void *ud,
                     struct mp_error *err) {
        struct walk w = { .fn = fn, .ud = ud };
        int fd, r;

        if ((r = mp_blobs_prefix_dir(prefix, w.key, err)) < 0)
                return r;
        fd = openat(b->root_fd, w.key, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT || errno == ENOTDIR ? 0 : io_fail(err, errno, "listing the objects under", prefix);
        r = walk_dir(fd, &w, strlen(w.key));
        if (r < 0 && !(err && err->message[0]))
                return io_fail(err, -r, "listing the objects under", prefix);
        return r;
}

const struct mp_blobs_ops mp_blobs_file_ops = {
        .scheme = "file",
        .open = file_open,
        .close = file_close,
        .put = file_put,
        .get = file_get,
        .del = file_del,
        .del_prefix = file_del_prefix,
        .ping = file_ping,
        .list = file_list,
};
