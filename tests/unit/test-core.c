/* core/: input validation against the schema the analysis produces. */
#include "core/core.h"
#include "check.h"

static json_t *schema(void) {
        /* What the guest's analysis gives for
         * def main(F: float, L: float, n: int = 3, material: str = "steel",
         *          loads: list[float] = [], mode: Optional[Literal["a", "b"]] = None) */
        return json_loads("{\"type\":\"object\",\"properties\":{"
                          "\"F\":{\"type\":\"number\"},\"L\":{\"type\":\"number\"},"
                          "\"n\":{\"type\":\"integer\",\"default\":3},"
                          "\"material\":{\"type\":\"string\",\"default\":\"steel\"},"
                          "\"loads\":{\"type\":\"array\",\"items\":{\"type\":\"number\"}},"
                          "\"mode\":{\"anyOf\":[{\"enum\":[\"a\",\"b\"]},{\"type\":\"null\"}]}},"
                          "\"required\":[\"F\",\"L\"],\"additionalProperties\":false}", 0, NULL);
}

static json_t *check_paths(const char *inputs_text, int expect_rc, const char *const *paths) {
        json_t *s = schema(), *in = json_loads(inputs_text, JSON_DECODE_ANY, NULL);
        struct mp_error err = { 0 };
        int rc = mp_core_schema_validate(s, in, &err);
        CHECK_INT(rc, ==, expect_rc);
        for (size_t i = 0; paths && paths[i]; i++) {
                bool found = false;
                json_t *e;
                size_t k;
                json_array_foreach(err.errors, k, e)
                        found |= !strcmp(json_string_value(json_object_get(e, "path")), paths[i]);
                if (!found)
                        CHECK_FAIL("no error for path %s in %s", paths[i], err.message);
        }
        if (expect_rc < 0) {
                CHECK_INT(err.status, ==, 422);
                CHECK(strstr(err.message, "invalid") != NULL);
        }
        mp_error_clear(&err);
        json_decref(s);
        json_decref(in);
        return NULL;
}

TEST(valid_inputs_pass) {
        check_paths("{\"F\": 1000, \"L\": 2.5}", 0, NULL);
        check_paths("{\"F\": 1.5, \"L\": 2, \"n\": 4, \"loads\": [1, 2.5], \"mode\": \"a\"}", 0, NULL);
        check_paths("{\"F\": 1, \"L\": 2, \"mode\": null}", 0, NULL);
}

TEST(wrong_types_name_their_paths) {
        static const char *const p[] = { "inputs.L", "inputs.n", NULL };
        check_paths("{\"F\": 1, \"L\": \"two\", \"n\": 2.5}", -EINVAL, p);
}

TEST(missing_and_unknown_fields) {
        static const char *const p[] = { "inputs.L", "inputs.colour", NULL };
        check_paths("{\"F\": 1, \"colour\": \"red\"}", -EINVAL, p);
}

TEST(nested_items_and_enums) {
        static const char *const p[] = { "inputs.loads[1]", "inputs.mode", NULL };
        check_paths("{\"F\": 1, \"L\": 2, \"loads\": [1, \"x\"], \"mode\": \"c\"}", -EINVAL, p);
}

TEST(inputs_must_be_an_object) {
        static const char *const p[] = { "inputs", NULL };
        check_paths("[1, 2]", -EINVAL, p);
}

TEST(status_end_states) {
        CHECK(mp_core_status_ended("completed"));
        CHECK(mp_core_status_ended("failed"));
        CHECK(mp_core_status_ended("timed_out"));
        CHECK(mp_core_status_ended("cancelled"));
        CHECK(!mp_core_status_ended("queued"));
        CHECK(!mp_core_status_ended("running"));
        CHECK(!mp_core_status_ended(NULL));
}

static const struct check_case cases[] = {
        CASE(valid_inputs_pass),
        CASE(wrong_types_name_their_paths),
        CASE(missing_and_unknown_fields),
        CASE(nested_items_and_enums),
        CASE(inputs_must_be_an_object),
        CASE(status_end_states),
};
CHECK_MAIN(cases)
