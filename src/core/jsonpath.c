/* JSON paths as workflows and studies write them: "moment_max", "rows.0.sigma". Kept
 * to keys and indices on purpose: no wildcards or filters, so a path names one value and
 * reading it costs one step per segment. */
#include <string.h>

#include "base/limits.h"
#include "core/flow.h"

/* The segment starting at p: its length up to the next dot or the end. */
static size_t segment_len(const char *p) {
        const char *dot = strchr(p, '.');
        return dot ? (size_t) (dot - p) : strlen(p);
}

int mp_jsonpath_check(const char *path, const char *field, struct mp_error *err) {
        size_t len, segments = 0;

        if (!path || !*path)
                return 0;
        len = strlen(path);
        if (len > MP_MAX_PATH_LEN) {
                mp_error_add_field(err, field, "is longer than %d bytes", MP_MAX_PATH_LEN);
                return -EINVAL;
        }
        for (const char *p = path;; p++) {
                size_t n = segment_len(p);
                if (n == 0) {
                        mp_error_add_field(err, field, "has an empty segment at byte %zu (paths read \"key.0.key\")",
                                           (size_t) (p - path) + 1);
                        return -EINVAL;
                }
                if (++segments > MP_MAX_PATH_SEGMENTS) {
                        mp_error_add_field(err, field, "has more than %d segments", MP_MAX_PATH_SEGMENTS);
                        return -EINVAL;
                }
                p += n;
                if (!*p)
                        return 0;
        }
}

/* A list index: decimal digits, no sign, no leading zero (so "01" is not 1). */
static bool parse_index(const char *s, size_t n, size_t *ret) {
        size_t v = 0;

        if (n == 0 || n > 9 || (n > 1 && s[0] == '0'))
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (size_t) (s[i] - '0');
        }
        *ret = v;
        return true;
}

int mp_jsonpath_get(json_t *root, const char *path, json_t **ret, struct mp_error *err) {
        struct mp_error check = { 0 };
        json_t *v = root;
        size_t idx;

        if (mp_jsonpath_check(path, "path", &check) < 0) {
                json_t *e = json_array_get(check.errors, 0);
                int r = mp_error_set(err, EINVAL, 422, "validation", "the path \"%.*s\" %s",
                                     MP_MAX_PATH_LEN, path,
                                     json_string_value(json_object_get(e, "message")));
                mp_error_clear(&check);
                return r;
        }
        for (const char *p = path && *path ? path : NULL; p;) {
                size_t n = segment_len(p);
                json_t *next = NULL;
                int at = (int) (p - path);

                if (json_is_object(v)) {
                        next = json_object_getn(v, p, n);
                        if (!next)
                                return mp_error_set(err, ENOENT, 422, "path",
                                                    "no key \"%.*s\" in %s%.*s%s", (int) n, p,
                                                    at ? "\"" : "the value", at ? at - 1 : 0, path,
                                                    at ? "\"" : "");
                } else if (json_is_array(v)) {
                        if (!parse_index(p, n, &idx))
                                return mp_error_set(err, ENOENT, 422, "path",
                                                    "\"%.*s\" is not a list index, and %s%.*s%s is a list",
                                                    (int) n, p, at ? "\"" : "the value", at ? at - 1 : 0,
                                                    path, at ? "\"" : "");
                        next = json_array_get(v, idx);
                        if (!next)
                                return mp_error_set(err, ENOENT, 422, "path",
                                                    "no index %zu in %s%.*s%s (a list of %zu)", idx,
                                                    at ? "\"" : "the value", at ? at - 1 : 0, path,
                                                    at ? "\"" : "", json_array_size(v));
                } else {
                        return mp_error_set(err, ENOENT, 422, "path",
                                            "no key \"%.*s\": %s%.*s%s is not an object or a list",
                                            (int) n, p, at ? "\"" : "the value", at ? at - 1 : 0, path,
                                            at ? "\"" : "");
                }
                v = next;
                p = p[n] ? p + n + 1 : NULL;
        }
        *ret = v;
        return 0;
}
