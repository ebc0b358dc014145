/* Fuzz target: the shape scan that bounds what a guest's reply (and a request frame)
 * may cost before jansson builds a tree from it (mp_exec_json_scan and
 * mp_exec_json_load, src/exec/exec-executor.c). Its promise: it never undercounts.
 * Whatever tree jansson builds from a text the scan let through nests no deeper and
 * holds no more values than the scan said, and mp_exec_json_load never returns a tree
 * past its bounds. Input: byte 0 picks the depth bound (0-63), byte 1 the value bound
 * (0-1023), the rest is the text. */
#include <jansson.h>

#include "exec/exec-internal.h"

#include "fuzz.h"

static void measure(json_t *j, unsigned level, unsigned *depth, size_t *values) {
        const char *k;
        json_t *v;
        size_t i;

        (*values)++;
        if (!json_is_array(j) && !json_is_object(j))
                return;
        if (level + 1 > *depth)
                *depth = level + 1;
        if (json_is_array(j))
                json_array_foreach(j, i, v) measure(v, level + 1, depth, values);
        else
                json_object_foreach(j, k, v) measure(v, level + 1, depth, values);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        unsigned max_depth, depth = 0, tree_depth = 0;
        size_t max_values, values = 0, tree_values = 0;
        enum mp_json_shape shape;
        json_t *j;

        if (size < 2)
                return 0;
        max_depth = data[0] % 64;
        max_values = (size_t) data[1] * 4;
        data += 2;
        size -= 2;

        shape = mp_exec_json_scan((const char *) data, size, max_depth, max_values, &depth, &values);
        fuzz_check(shape == MP_JSON_FITS || shape == MP_JSON_TOO_DEEP || shape == MP_JSON_TOO_MANY ||
                   shape == MP_JSON_INVALID);
        if (shape == MP_JSON_FITS) {
                fuzz_check(depth <= max_depth && values <= max_values);
                j = json_loadb((const char *) data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                if (j) {
                        measure(j, 0, &tree_depth, &tree_values);
                        fuzz_check(tree_depth <= depth);
                        fuzz_check(tree_values <= values);
                        json_decref(j);
                }
        }

        j = mp_exec_json_load((const char *) data, size, max_depth, max_values, &shape);
        if (j) {
                tree_depth = 0;
                tree_values = 0;
                measure(j, 0, &tree_depth, &tree_values);
                fuzz_check(tree_depth <= max_depth && tree_values <= max_values);
                json_decref(j);
        }
        return 0;
}
