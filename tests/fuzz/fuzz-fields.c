/* Fuzz target: the readers of a function's body in src/core/functions.c (tags, limits,
 * requirements), which are static: the file is compiled into this target, so nothing is
 * exposed for it. Input: a JSON object, as POST /functions would carry. */
#include "../../src/core/functions.c"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const struct mp_config config = {
                .default_timeout_s = 30, .max_timeout_s = 300, .default_memory_mb = 512,
                .max_memory_mb = 4096, .default_cpus = 1, .max_cpus = 4,
        };
        struct mp_core core = { .config = &config };
        json_t *body = json_loadb((const char *) data, size, JSON_ALLOW_NUL, NULL);
        struct mp_error err = { 0 };
        json_t *v;

        if (!body)
                return 0;
        v = read_tags(json_object_get(body, "tags"), &err);
        if (v) {
                size_t i;
                json_t *t;
                fuzz_check(json_array_size(v) <= MP_MAX_TAGS);
                json_array_foreach(v, i, t)
                        fuzz_check(mp_core_tag_valid(json_string_value(t)));
                json_t *st = search_text("Name", "Déscription", v);
                fuzz_check(st);
                json_decref(st);
        }
        json_decref(v);
        v = read_limits(&core, json_object_get(body, "limits"), json_object_get(body, "base"), &err);
        if (v && !err.errors && !json_object_get(body, "base")) {
                json_int_t t = json_integer_value(json_object_get(v, "timeout_s"));
                json_int_t m = json_integer_value(json_object_get(v, "memory_mb"));
                json_int_t c = json_integer_value(json_object_get(v, "cpus"));
                fuzz_check(t >= 1 && t <= config.max_timeout_s);
                fuzz_check(m >= 64 && m <= config.max_memory_mb);
                fuzz_check(c >= 1 && c <= config.max_cpus);
        }
        json_decref(v);
        v = read_requirements(json_object_get(body, "requirements"), &err);
        json_decref(v);
        (void) mp_core_validation_done(&err, "fields");
        mp_error_clear(&err);
        json_decref(body);
        return 0;
}
