/* blobs/: dispatch by the url's scheme, and the key rules every backend shares. */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "blobs/blobs-internal.h"

static const struct mp_blobs_ops *const backends[] = {
        &mp_blobs_file_ops,
        &mp_blobs_s3_ops,
};

int mp_blobs_open(const char *url, struct mp_blobs **ret, struct mp_error *err) {
        const char *colon;
        size_t n;

        if (!url || !(colon = strchr(url, ':')) || colon == url)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s' has no scheme: write file:/path/to/objects or "
                                    "s3://BUCKET?endpoint=URL&region=REGION",
                                    url ? url : "(null)");
        n = (size_t) (colon - url);
        for (size_t i = 0; i < ELEMENTSOF(backends); i++)
                if (strlen(backends[i]->scheme) == n && strncmp(url, backends[i]->scheme, n) == 0)
                        return backends[i]->open(url, ret, err);
        return mp_error_set(err, EPROTONOSUPPORT, 500, "config",
                            "objects URL '%s': unknown scheme '%.*s' (this build knows file: "
                            "and s3:)",
                            url, (int) n, url);
}

void mp_blobs_close(struct mp_blobs *b) {
        if (b)
                MP_BLOBS(b)->close(b);
}

static bool key_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
}

/* Keys become paths under the backend's root, so this is a security edge: no absolute
 * paths, no empty, "." or ".." segments, nothing outside [A-Za-z0-9._-] and '/'. */
int mp_blobs_key_valid(const char *key) {
        size_t len, seg = 0;
        const char *start;

        if (!key || !*key)
                return 0;
        len = strlen(key);
        if (len > MP_BLOBS_MAX_KEY)
                return 0;
        start = key;
        for (const char *p = key;; p++) {
                if (*p == '/' || *p == 0) {
                        seg = (size_t) (p - start);
                        if (seg == 0 || (seg == 1 && start[0] == '.') ||
                            (seg == 2 && start[0] == '.' && start[1] == '.'))
                                return 0;
                        if (*p == 0)
                                return 1;
                        start = p + 1;
                } else if (!key_char(*p))
                        return 0;
        }
}

int mp_blobs_prefix_dir(const char *prefix, char dir[MP_BLOBS_MAX_KEY + 1], struct mp_error *err) {
        size_t n = prefix ? strlen(prefix) : 0;

        if (n < 2 || prefix[n - 1] != '/' || n - 1 > MP_BLOBS_MAX_KEY)
                return mp_error_set(err, EINVAL, 422, "validation",
                                    "object prefix '%.600s' is not valid: it must be a key followed "
                                    "by '/'", prefix ? prefix : "(null)");
        memcpy(dir, prefix, n - 1);
        dir[n - 1] = 0;
        if (!mp_blobs_key_valid(dir))
                return mp_error_set(err, EINVAL, 422, "validation",
                                    "object key '%.600s' is not valid: it must be 1 to %d bytes of "
                                    "[A-Za-z0-9._-] segments joined by '/', with no empty, '.' or '..' "
                                    "segment", dir, MP_BLOBS_MAX_KEY);
        return 0;
}
