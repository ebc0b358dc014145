/* Fuzz target: mp_core_schema_validate (src/core/schema.c), a call's inputs checked
 * against the JSON Schema the analysis of a function produced. Both halves are hostile:
 * the inputs come in the HTTP body, the schema from the analysis of a user's code.
 * Input: the schema (one line of JSON), a newline, then the inputs (JSON). Also feeds the
 * inputs to the field readers of core.c. */
#include <jansson.h>

#include "base/limits.h"
#include "core/core-internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t n_schema;
        const uint8_t *schema_text = fuzz_split(&data, &size, '\n', &n_schema);
        json_t *schema = json_loadb((const char *) schema_text, n_schema, 0, NULL);
        json_t *inputs = json_loadb((const char *) data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        struct mp_error err = { 0 };
        const char *s = NULL;
        int i = 7, r;

        if (!inputs) {
                json_decref(schema);
                return 0;
        }
        r = mp_core_schema_validate(schema, inputs, &err);
        fuzz_check(r == 0 || r == -EINVAL);
        fuzz_check(r == 0 || err.status == 422);
        fuzz_check((r == 0) == !(err.errors && json_array_size(err.errors)));
        fuzz_check(strnlen(err.message, sizeof(err.message)) < sizeof(err.message));
        mp_error_clear(&err);

        /* The field readers, on whatever the inputs hold. */
        if (json_is_object(inputs)) {
                const char *key;
                json_t *v;
                json_object_foreach(inputs, key, v) {
                        if (mp_core_field_string(inputs, key, true, 64, &s, &err) == 0 && s) {
                                fuzz_check(strlen(s) <= 64);
                                (void) mp_core_tag_valid(s);
                        }
                        if (mp_core_field_int(inputs, key, -5, 1000, &i, &err) == 0)
                                fuzz_check(i >= -5 && i <= 1000);
                }
                (void) mp_core_validation_done(&err, "fields");
                mp_error_clear(&err);
        }
        json_decref(schema);
        json_decref(inputs);
        return 0;
}
