/* blobs/: the object store port (inputs, results, logs, artifacts that are too large to
 * stay inline in the metadata store). Keys are relative paths made of [A-Za-z0-9._-]
 * segments separated by '/', never "." or ".." segments, at most 512 bytes:
 * "tasks/<task id>/result.json", "tasks/<task id>/artifacts/<name>".
 * Every operation returns >= 0 or -errno (-ENOENT for a missing key, -EINVAL for a bad
 * key, -EFBIG past max) with err saying what failed; safe from several threads. */
#pragma once

#include <stddef.h>

#include "base/error.h"

struct mp_blobs;

struct mp_blobs_ops {
        const char *scheme; /* "file" */
        /* url "file:/path/to/objects": creates the folder (0700). */
        int (*open)(const char *url, struct mp_blobs **ret, struct mp_error *err);
        void (*close)(struct mp_blobs *b);
        /* Atomic: a reader sees the old object or the whole new one, never a part. */
        int (*put)(struct mp_blobs *b, const char *key, const void *data, size_t len,
                   struct mp_error *err);
        /* *ret is malloc'ed and NUL-terminated (the NUL is not counted in *ret_len). */
        int (*get)(struct mp_blobs *b, const char *key, size_t max, char **ret,
                   size_t *ret_len, struct mp_error *err);
        /* Missing keys are not an error. */
        int (*del)(struct mp_blobs *b, const char *key, struct mp_error *err);
        /* Delete every key under a prefix ending in '/'. */
        int (*del_prefix)(struct mp_blobs *b, const char *prefix, struct mp_error *err);
        /* Is the object store reachable? A cheap request (file: the folder is there; S3:
         * HEAD of the bucket), for GET /readyz: 0, or -errno with err filled. */
        int (*ping)(struct mp_blobs *b, struct mp_error *err);
        /* Call fn(ud, key) for every object whose key starts with prefix (a key followed
         * by '/'), keys relative to the store as put takes them, the keys of one folder
         * together (file:) or in key order (s3:). A missing prefix lists nothing. fn
         * returns 0 to go on, > 0 to stop (the listing then returns that value), < 0 to
         * fail with it. For the collector of orphaned objects (core/retention.c). */
        int (*list)(struct mp_blobs *b, const char *prefix, int (*fn)(void *ud, const char *key),
                    void *ud, struct mp_error *err);
};

struct mp_blobs_base {
        const struct mp_blobs_ops *ops;
};
#define MP_BLOBS(b) (((struct mp_blobs_base *) (b))->ops)

int mp_blobs_open(const char *url, struct mp_blobs **ret, struct mp_error *err);
void mp_blobs_close(struct mp_blobs *b);
/* True when key follows the rules above. */
int mp_blobs_key_valid(const char *key);
