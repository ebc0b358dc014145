/* Fuzz target: study designs (src/core/design.c), from the body of POST /studies.
 * Input: a JSON object {"design", "fixed"?, "schema"?}. Designs that count more than a
 * few thousand points are only counted (making them is the same code, slower). */
#include <jansson.h>

#include "base/limits.h"
#include "core/flow.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *body = json_loadb((const char *) data, size, JSON_ALLOW_NUL, NULL), *points = NULL, *p;
        json_t *design = json_object_get(body, "design");
        struct mp_error err = { 0 };
        size_t count = 0, i;
        int r;

        if (!body)
                return 0;
        r = mp_design_count(design, &count, &err);
        fuzz_check(r == 0 || r == -EINVAL || r == -E2BIG);
        fuzz_check(r == 0 || err.status == 422);
        fuzz_check(r < 0 || (count >= 1 && count <= MP_MAX_STUDY_POINTS));
        mp_error_clear(&err);
        if (r == 0 && count <= 5000) {
                r = mp_design_points(design, json_object_get(body, "fixed"), json_object_get(body, "schema"),
                                     &points, &err);
                fuzz_check(r == 0 || r == -EINVAL);
                fuzz_check(r == 0 || (err.status == 422 && err.message[0]));
                fuzz_check((r == 0) == (points != NULL));
                fuzz_check(!points || json_array_size(points) == count);
                json_array_foreach(points, i, p)
                        fuzz_check(json_is_object(p));
                mp_error_clear(&err);
        }
        json_decref(points);
        json_decref(body);
        return 0;
}
