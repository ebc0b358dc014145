/* Fuzz target: JSON paths (src/core/jsonpath.c), written by users in workflow
 * definitions and study outputs, applied to results that user code returned.
 * Input: the path (one line), a newline, then a JSON document. */
#include <jansson.h>

#include "base/limits.h"
#include "core/flow.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t n_path;
        const uint8_t *p = fuzz_split(&data, &size, '\n', &n_path);
        char *path = fuzz_strndup(p, n_path);
        json_t *doc = json_loadb((const char *) data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        struct mp_error err = { 0 };
        json_t *v = NULL;
        int c, r;

        c = mp_jsonpath_check(path, "path", &err);
        fuzz_check(c == 0 || c == -EINVAL);
        fuzz_check((c == 0) == !err.errors);
        fuzz_check(c < 0 || strlen(path) <= MP_MAX_PATH_LEN);
        mp_error_clear(&err);
        if (doc) {
                r = mp_jsonpath_get(doc, path, &v, &err);
                fuzz_check(r == 0 || r == -ENOENT || r == -EINVAL);
                fuzz_check(r != -EINVAL || c < 0);     /* malformed exactly when check says so */
                fuzz_check(c < 0 || r != -EINVAL);
                fuzz_check((r == 0) == (v != NULL));
                fuzz_check(r == 0 || (err.status == 422 && err.message[0]));
                fuzz_check(strnlen(err.message, sizeof(err.message)) < sizeof(err.message));
                if (r == 0 && !*path)
                        fuzz_check(v == doc);
                mp_error_clear(&err);
        }
        json_decref(doc);
        free(path);
        return 0;
}
