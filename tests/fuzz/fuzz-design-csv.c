/* Fuzz target: the CSV reader of list designs (src/core/design-csv.c), fed with the raw
 * body of POST /studies when it is text/csv. Input: the CSV bytes. */
#include <jansson.h>

#include "base/limits.h"
#include "core/flow.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct mp_error err = { 0 };
        json_t *points = NULL, *p;
        size_t i;
        int r = mp_design_csv((const char *) data, size, &points, &err);

        fuzz_check(r == 0 || r == -EINVAL || r == -ENOMEM);
        fuzz_check(r == 0 || (err.status == 422 && err.message[0]) || r == -ENOMEM);
        fuzz_check((r == 0) == (points != NULL));
        fuzz_check(!points || (json_array_size(points) >= 1 && json_array_size(points) <= MP_MAX_STUDY_POINTS));
        json_array_foreach(points, i, p) {
                fuzz_check(json_is_object(p));
                fuzz_check(json_object_size(p) <= MP_MAX_CSV_COLUMNS);
        }
        mp_error_clear(&err);
        json_decref(points);
        return 0;
}
