/* core/: workflows, studies and the result cache, the pure parts (core/flow.h): paths,
 * canonical JSON and cache keys, study designs, workflow definitions, and a run's
 * scheduling driven step by step as the worker will drive it. */
#include <math.h>

#include "base/limits.h"
#include "core/flow.h"
#include "check.h"

static json_t *J(const char *text) {
        json_error_t e;
        json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
        if (!v)
                CHECK_FAIL("bad JSON in the test: %s: %s", e.text, text);
        return v;
}

/* Does err list a field error at path (whose message holds `part`, when given)? */
static bool has_field(struct mp_error *err, const char *path, const char *part) {
        json_t *e;
        size_t i;
        json_array_foreach(err->errors, i, e)
                if (!strcmp(json_string_value(json_object_get(e, "path")), path) &&
                    (!part || strstr(json_string_value(json_object_get(e, "message")), part)))
                        return true;
        return false;
}

#define CHECK_FIELD(err, path, part)                                                          \
        do {                                                                                  \
                if (!has_field((err), (path), (part)))                                        \
                        CHECK_FAIL("no error at %s (\"%s\") in: %s", (path), (part) ? (part) : "", \
                                   (err)->message);                                           \
        } while (0)

static char *dump(json_t *v) {
        static char buf[4096];
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(buf, sizeof(buf), "%s", s ? s : "(null)");
        free(s);
        return buf;
}

/* --- paths --- */

TEST(path_reads_keys_and_indices) {
        json_t *doc = J("{\"moment_max\": 12.5, \"rows\": [{\"sigma\": 1}, {\"sigma\": 2}], \"0\": \"zero\"}"), *v;
        struct mp_error err = { 0 };

        CHECK_INT(mp_jsonpath_get(doc, "moment_max", &v, &err), ==, 0);
        CHECK(json_real_value(v) == 12.5);
        CHECK_INT(mp_jsonpath_get(doc, "rows.1.sigma", &v, &err), ==, 0);
        CHECK_INT(json_integer_value(v), ==, 2);
        CHECK_INT(mp_jsonpath_get(doc, "0", &v, &err), ==, 0); /* a digit key of an object */
        CHECK_STR(json_string_value(v), "zero");
        CHECK_INT(mp_jsonpath_get(doc, "", &v, &err), ==, 0);
        CHECK(v == doc);
        CHECK_INT(mp_jsonpath_get(doc, NULL, &v, &err), ==, 0);
        CHECK(v == doc);
        json_decref(doc);
}

TEST(path_misses_name_the_segment) {
        json_t *doc = J("{\"rows\": [{\"sigma\": 1}], \"n\": 3}"), *v = NULL;
        struct mp_error err = { 0 };

        CHECK_INT(mp_jsonpath_get(doc, "rows.0.tau", &v, &err), ==, -ENOENT);
        CHECK_STR(err.message, "no key \"tau\" in \"rows.0\"");
        CHECK_INT(err.status, ==, 422);
        mp_error_clear(&err);
        CHECK_INT(mp_jsonpath_get(doc, "rows.3", &v, &err), ==, -ENOENT);
        CHECK_STR(err.message, "no index 3 in \"rows\" (a list of 1)");
        mp_error_clear(&err);
        CHECK_INT(mp_jsonpath_get(doc, "rows.01", &v, &err), ==, -ENOENT);
        CHECK(strstr(err.message, "\"01\" is not a list index") != NULL);
        mp_error_clear(&err);
        CHECK_INT(mp_jsonpath_get(doc, "n.x", &v, &err), ==, -ENOENT);
        CHECK_STR(err.message, "no key \"x\": \"n\" is not an object or a list");
        mp_error_clear(&err);
        CHECK_INT(mp_jsonpath_get(doc, "missing", &v, &err), ==, -ENOENT);
        CHECK_STR(err.message, "no key \"missing\" in the value");
        mp_error_clear(&err);
        CHECK(v == NULL); /* untouched on failure */
        json_decref(doc);
}

TEST(path_shape_is_checked) {
        struct mp_error err = { 0 };
        char longp[MP_MAX_PATH_LEN + 2], many[200] = "a";

        CHECK_INT(mp_jsonpath_check("a.b.0", "p", &err), ==, 0);
        CHECK_INT(mp_jsonpath_check("a..b", "p", &err), ==, -EINVAL);
        CHECK_FIELD(&err, "p", "empty segment at byte 3");
        mp_error_clear(&err);
        CHECK_INT(mp_jsonpath_check(".a", "p", &err), ==, -EINVAL);
        CHECK_INT(mp_jsonpath_check("a.", "p", &err), ==, -EINVAL);
        mp_error_clear(&err);
        memset(longp, 'x', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = 0;
        CHECK_INT(mp_jsonpath_check(longp, "p", &err), ==, -EINVAL);
        CHECK_FIELD(&err, "p", "longer than 256 bytes");
        mp_error_clear(&err);
        for (int i = 0; i < MP_MAX_PATH_SEGMENTS; i++)
                strcat(many, ".a");
        CHECK_INT(mp_jsonpath_check(many, "p", &err), ==, -EINVAL);
        CHECK_FIELD(&err, "p", "more than 32 segments");
        mp_error_clear(&err);
}

/* --- canonical JSON and cache keys --- */

static void check_canonical(const char *in, const char *want) {
        json_t *v = J(in);
        struct mp_error err = { 0 };
        char *text = NULL;
        CHECK_INT(mp_canonical_dump(v, &text, NULL, &err), ==, 0);
        CHECK_STR(text, want);
        free(text);
        json_decref(v);
}

TEST(canonical_sorts_and_normalizes) {
        check_canonical("{\"b\": 1, \"a\": [1.0, -0.0, 2.5, 1e0, 10E2]}", "{\"a\":[1,0,2.5,1,1000],\"b\":1}");
        check_canonical("{\"z\": {\"y\": null, \"x\": true}, \"é\": false, \"A\": 0.1}",
                        "{\"A\":0.1,\"z\":{\"x\":true,\"y\":null},\"é\":false}");
        check_canonical("[1e300, 1.5e-7, -2.25, 123456789012345678, 1e17]",
                        "[1e+300,1.5e-07,-2.25,123456789012345678,100000000000000000]");
        check_canonical("\"tab\\t quote\\\" back\\\\ ctl\\u0001 nl\\n é € \\u2028\"",
                        "\"tab\\t quote\\\" back\\\\ ctl\\u0001 nl\\n é € \u2028\"");
        check_canonical("0.30000000000000004", "0.30000000000000004");
}

TEST(canonical_refuses_what_has_no_form) {
        struct mp_error err = { 0 };
        char *text = NULL;
        json_t *deep = json_array(), *cur = deep;
        for (int i = 0; i < MP_MAX_JSON_DEPTH + 2; i++) {
                json_t *n = json_array();
                json_array_append_new(cur, n);
                cur = n;
        }
        CHECK_INT(mp_canonical_dump(deep, &text, NULL, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "deeper than 64") != NULL);
        CHECK(text == NULL);
        mp_error_clear(&err);
        json_decref(deep);
}

TEST(cache_keys_agree_on_equal_inputs) {
        json_t *a = J("{\"F\": 1000, \"L\": 2.0, \"opts\": {\"mode\": \"a\", \"n\": [1, 2]}}");
        json_t *b = J("{\"opts\": {\"n\": [1.0, 2e0], \"mode\": \"a\"}, \"L\": 2, \"F\": 1e3}");
        json_t *c = J("{\"F\": 1000, \"L\": 2.5, \"opts\": {\"mode\": \"a\", \"n\": [1, 2]}}");
        json_t *d = J("{\"F\": 1000, \"L\": 2.0, \"opts\": {\"mode\": \"a\", \"n\": [2, 1]}}");
        char ka[MP_CACHE_KEY_HEX_LEN + 1], kb[sizeof(ka)], kc[sizeof(ka)], kd[sizeof(ka)], kv[sizeof(ka)],
                ke[sizeof(ka)];
        struct mp_error err = { 0 };

        CHECK_INT(mp_cache_key("ver-1", "env-1", a, ka, &err), ==, 0);
        CHECK_INT(mp_cache_key("ver-1", "env-1", b, kb, &err), ==, 0);
        CHECK_INT(mp_cache_key("ver-1", "env-1", c, kc, &err), ==, 0);
        CHECK_INT(mp_cache_key("ver-1", "env-1", d, kd, &err), ==, 0);
        CHECK_INT(mp_cache_key("ver-2", "env-1", a, kv, &err), ==, 0);
        CHECK_INT(mp_cache_key("ver-1", "env-2", a, ke, &err), ==, 0);
        CHECK_INT(strlen(ka), ==, MP_CACHE_KEY_HEX_LEN);
        CHECK_INT(strspn(ka, "0123456789abcdef"), ==, MP_CACHE_KEY_HEX_LEN);
        CHECK_STR(ka, kb);
        CHECK(strcmp(ka, kc) != 0);
        CHECK(strcmp(ka, kd) != 0); /* list order matters */
        CHECK(strcmp(ka, kv) != 0);
        CHECK(strcmp(ka, ke) != 0);
        /* The parts are length-prefixed: moving a byte between them changes the key. */
        CHECK_INT(mp_cache_key("ver-1e", "nv-1", a, kv, &err), ==, 0);
        CHECK(strcmp(ka, kv) != 0);
        json_decref(a);
        json_decref(b);
        json_decref(c);
        json_decref(d);
}

/* --- designs --- */

static json_t *points_of(const char *design, const char *fixed, const char *schema, int want_rc,
                         struct mp_error *err) {
        json_t *d = J(design), *f = fixed ? J(fixed) : NULL, *s = schema ? J(schema) : NULL, *pts = NULL;
        int r = mp_design_points(d, f, s, &pts, err);
        CHECK_INT(r, ==, want_rc);
        json_decref(d);
        json_decref(f);
        json_decref(s);
        return pts;
}

static const char *beam_schema =
        "{\"type\":\"object\",\"properties\":{\"F\":{\"type\":\"number\"},\"L\":{\"type\":\"number\"},"
        "\"E\":{\"type\":\"number\"},\"n\":{\"type\":\"integer\"}},\"required\":[\"F\",\"L\"],"
        "\"additionalProperties\":false}";

TEST(grid_is_full_factorial_in_stable_order) {
        struct mp_error err = { 0 };
        json_t *pts = points_of("{\"type\": \"grid\", \"params\": {\"L\": [1, 1.5, 2], "
                                "\"F\": {\"start\": 100, \"stop\": 500, \"num\": 5}}}",
                                "{\"E\": 210e9}", beam_schema, 0, &err);
        size_t count = 0;

        REQUIRE(pts);
        CHECK_INT(json_array_size(pts), ==, 15);
        /* The first parameter varies slowest; stop is reached exactly; integral values
         * are integers; the fixed inputs are in every point, as given. */
        CHECK_STR(dump(json_array_get(pts, 0)), "{\"E\":210000000000.0,\"L\":1,\"F\":100}");
        CHECK_STR(dump(json_array_get(pts, 1)), "{\"E\":210000000000.0,\"L\":1,\"F\":200}");
        CHECK_STR(dump(json_array_get(pts, 4)), "{\"E\":210000000000.0,\"L\":1,\"F\":500}");
        CHECK_STR(dump(json_array_get(pts, 5)), "{\"E\":210000000000.0,\"L\":1.5,\"F\":100}");
        CHECK_STR(dump(json_array_get(pts, 14)), "{\"E\":210000000000.0,\"L\":2,\"F\":500}");
        json_decref(pts);
        json_t *d = J("{\"type\": \"grid\", \"params\": {\"a\": [1, 2], \"b\": {\"start\": 0, \"stop\": 1, \"num\": 7}}}");
        CHECK_INT(mp_design_count(d, &count, &err), ==, 0);
        CHECK_INT(count, ==, 14);
        json_decref(d);
}

TEST(grid_over_the_limit_is_refused_before_making_points) {
        struct mp_error err = { 0 };
        size_t count = 7;
        json_t *d = J("{\"type\": \"grid\", \"params\": {\"a\": {\"start\": 0, \"stop\": 1, \"num\": 1000},"
                      "\"b\": {\"start\": 0, \"stop\": 1, \"num\": 1000}}}");

        CHECK_INT(mp_design_count(d, &count, &err), ==, -E2BIG);
        CHECK_INT(count, ==, 7);
        CHECK_INT(err.status, ==, 422);
        CHECK_STR(err.message, "the grid makes more than 100000 points, the limit of a study (1000 x 1000)");
        CHECK_FIELD(&err, "design.params", "more than 100000");
        mp_error_clear(&err);
        json_decref(d);
        /* Sizes whose product wraps 64 bits are refused all the same. */
        json_t *pts = points_of("{\"type\": \"grid\", \"params\": {"
                                "\"a\": {\"start\": 0, \"stop\": 1, \"num\": 4611686018427387904},"
                                "\"b\": {\"start\": 0, \"stop\": 1, \"num\": 4611686018427387904},"
                                "\"c\": [1, 2, 3, 4]}}", NULL, NULL, -E2BIG, &err);
        CHECK(pts == NULL);
        CHECK(strstr(err.message, "more than 100000 points") != NULL);
        mp_error_clear(&err);
        pts = points_of("{\"type\": \"lhs\", \"params\": {\"a\": {\"min\": 0, \"max\": 1}}, \"count\": 1000000, \"seed\": 1}",
                        NULL, NULL, -E2BIG, &err);
        CHECK(strstr(err.message, "1000000 points, more than 100000") != NULL);
        mp_error_clear(&err);
}

TEST(design_fields_are_all_reported) {
        struct mp_error err = { 0 };
        json_t *pts = points_of("{\"type\": \"grid\", \"params\": {\"a\": [], \"b\": {\"start\": \"x\", \"num\": 0},"
                                "\"c\": 3}, \"extra\": 1}", NULL, NULL, -EINVAL, &err);
        CHECK(pts == NULL);
        CHECK_FIELD(&err, "design.params.a", "no values");
        CHECK_FIELD(&err, "design.params.b.start", "finite number");
        CHECK_FIELD(&err, "design.params.b.stop", "required");
        CHECK_FIELD(&err, "design.params.b.num", "at least 1");
        CHECK_FIELD(&err, "design.params.c", "list of values");
        CHECK_FIELD(&err, "design.extra", NULL);
        CHECK_INT(err.status, ==, 422);
        mp_error_clear(&err);
        points_of("{\"type\": \"lhs\", \"params\": {\"a\": {\"min\": 2, \"max\": 1}}, \"count\": 0}", NULL, NULL,
                  -EINVAL, &err);
        CHECK_FIELD(&err, "design.params.a.max", "below min");
        CHECK_FIELD(&err, "design.count", NULL);
        CHECK_FIELD(&err, "design.seed", NULL);
        mp_error_clear(&err);
        points_of("{\"type\": \"random\", \"params\": {\"n\": {\"min\": 1.2, \"max\": 1.8}}, \"count\": 3, \"seed\": 1}",
                  NULL, beam_schema, -EINVAL, &err);
        CHECK_FIELD(&err, "design.params.n", "holds no integer");
        mp_error_clear(&err);
        points_of("{\"type\": \"sobol\"}", NULL, NULL, -EINVAL, &err);
        CHECK_FIELD(&err, "design.type", "grid, list, random, lhs");
        mp_error_clear(&err);
        points_of("{\"type\": \"grid\", \"params\": {\"L\": [1, 2]}}", "{\"L\": 3}", NULL, -EINVAL, &err);
        CHECK_FIELD(&err, "fixed.L", "also varied");
        mp_error_clear(&err);
}

TEST(points_are_validated_naming_the_first_bad_one) {
        struct mp_error err = { 0 };
        json_t *pts = points_of("{\"type\": \"list\", \"points\": [{\"F\": 1, \"L\": 2}, {\"F\": 1, \"L\": 3},"
                                "{\"F\": 1, \"L\": \"long\", \"G\": 1}, {\"F\": \"x\"}]}",
                                NULL, beam_schema, -EINVAL, &err);
        CHECK(pts == NULL);
        CHECK_INT(err.status, ==, 422);
        CHECK(strstr(err.message, "point 2 of 4 is not valid input") != NULL);
        CHECK_FIELD(&err, "points[2].L", "expected a number");
        CHECK_FIELD(&err, "points[2].G", "not a parameter");
        CHECK(!has_field(&err, "points[3].F", NULL)); /* the first bad point only */
        mp_error_clear(&err);
        pts = points_of("{\"type\": \"list\", \"points\": [{\"L\": 1}, {\"L\": 2}]}", "{\"F\": 10}", beam_schema, 0, &err);
        CHECK_STR(dump(pts), "[{\"F\":10,\"L\":1},{\"F\":10,\"L\":2}]");
        json_decref(pts);
}

TEST(random_generator_is_pinned) {
        /* Values of xoshiro256** seeded by splitmix64, from an independent implementation
         * of the published algorithms: a change here changes every study's points. */
        CHECK(mp_design_uniform(0, 0) == 0x1.33d8be6d96ebep-1);
        CHECK(mp_design_uniform(0, 1) == 0x1.7edc3ef092ac8p-1);
        CHECK(mp_design_uniform(0, 2) == 0x1.a5f849d4933e0p-4);
        CHECK(mp_design_uniform(7, 0) == 0x1.66b1f5ee9df2ep-1);
        CHECK(mp_design_uniform(7, 2) == 0x1.ade3a6932a58fp-1);
}

TEST(lhs_is_reproducible_and_stratified) {
        const char *design = "{\"type\": \"lhs\", \"params\": {\"L\": {\"min\": 1, \"max\": 3}, "
                             "\"F\": {\"min\": -50, \"max\": 50}, \"n\": {\"min\": 1, \"max\": 10}}, \"count\": 10, \"seed\": 7}";
        struct mp_error err = { 0 };
        json_t *a = points_of(design, "{\"E\": 1}", beam_schema, 0, &err);
        json_t *b = points_of(design, "{\"E\": 1}", beam_schema, 0, &err);
        json_t *c = points_of("{\"type\": \"lhs\", \"params\": {\"L\": {\"min\": 1, \"max\": 3}, "
                              "\"F\": {\"min\": -50, \"max\": 50}, \"n\": {\"min\": 1, \"max\": 10}}, \"count\": 10, \"seed\": 8}",
                              "{\"E\": 1}", beam_schema, 0, &err);
        bool seen_l[10] = { 0 }, seen_f[10] = { 0 }, seen_n[10] = { 0 };
        json_t *p;
        size_t i;

        REQUIRE(a && b && c);
        CHECK(json_equal(a, b));
        CHECK(!json_equal(a, c));
        json_array_foreach(a, i, p) {
                double l = json_number_value(json_object_get(p, "L")), f = json_number_value(json_object_get(p, "F"));
                json_t *n = json_object_get(p, "n");
                CHECK(l >= 1 && l < 3);
                CHECK(f >= -50 && f < 50);
                seen_l[(int) ((l - 1) / 0.2)] = true; /* one point in each tenth of each range */
                seen_f[(int) ((f + 50) / 10)] = true;
                CHECK(json_is_integer(n)); /* the schema says integer */
                if (json_is_integer(n) && json_integer_value(n) >= 1 && json_integer_value(n) <= 10)
                        seen_n[json_integer_value(n) - 1] = true;
        }
        for (i = 0; i < 10; i++)
                CHECK(seen_l[i] && seen_f[i] && seen_n[i]);
        json_decref(a);
        json_decref(b);
        json_decref(c);
}

TEST(random_design_is_reproducible) {
        const char *design = "{\"type\": \"random\", \"params\": {\"L\": {\"min\": 1, \"max\": 3}, \"F\": {\"min\": 5, \"max\": 5}}, "
                             "\"count\": 50, \"seed\": 123}";
        struct mp_error err = { 0 };
        json_t *a = points_of(design, NULL, beam_schema, 0, &err), *b = points_of(design, NULL, beam_schema, 0, &err), *p;
        size_t i;

        REQUIRE(a && b);
        CHECK(json_equal(a, b));
        CHECK_INT(json_array_size(a), ==, 50);
        json_array_foreach(a, i, p) {
                double l = json_number_value(json_object_get(p, "L"));
                CHECK(l >= 1 && l < 3);
                CHECK_INT(json_integer_value(json_object_get(p, "F")), ==, 5);
        }
        /* The first point is min + u0 * width, u0 the stream's first number. */
        CHECK(json_real_value(json_object_get(json_array_get(a, 0), "L")) == 1 + mp_design_uniform(123, 0) * 2);
        json_decref(a);
        json_decref(b);
}

/* --- CSV --- */

static json_t *csv(const char *text, int want_rc, struct mp_error *err) {
        json_t *pts = NULL;
        CHECK_INT(mp_design_csv(text, strlen(text), &pts, err), ==, want_rc);
        return pts;
}

TEST(csv_reads_points) {
        struct mp_error err = { 0 };
        json_t *pts = csv("\xef\xbb\xbfL,F,material,\"note, long\",ok\r\n"
                          "1,100,steel,\"said \"\"hi\"\"\",true\r\n"
                          "\r\n"
                          "1.5e0, -2 ,\"42\",\"two\nlines\",false\n"
                          "2,,alu,,x\n",
                          0, &err);
        REQUIRE(pts);
        CHECK_STR(dump(pts), "[{\"L\":1,\"F\":100,\"material\":\"steel\",\"note, long\":\"said \\\"hi\\\"\",\"ok\":true},"
                             "{\"L\":1.5,\"F\":-2,\"material\":\"42\",\"note, long\":\"two\\nlines\",\"ok\":false},"
                             "{\"L\":2,\"material\":\"alu\",\"ok\":\"x\"}]");
        json_decref(pts);
        pts = csv("a\ninf\nnan\n0x10\n", 0, &err); /* not numbers as JSON knows them */
        CHECK_STR(dump(pts), "[{\"a\":\"inf\"},{\"a\":\"nan\"},{\"a\":\"0x10\"}]");
        json_decref(pts);
}

TEST(csv_errors_name_line_and_column) {
        struct mp_error err = { 0 };
        CHECK(csv("L,F\n1,2\n3\n", -EINVAL, &err) == NULL);
        CHECK_STR(err.message, "CSV line 3, column 2 (\"F\"): the line has 1 fields, the header 2");
        CHECK_INT(err.status, ==, 422);
        mp_error_clear(&err);
        csv("L,F\n1,\"2\n\n", -EINVAL, &err);
        CHECK_STR(err.message, "CSV line 2, column 2 (\"F\"): a quoted field is not closed");
        mp_error_clear(&err);
        csv("L,F\n\"a\nb\",2\n1,x\"y\n", -EINVAL, &err);
        CHECK(strstr(err.message, "line 4, column 2") != NULL); /* lines inside quotes count */
        CHECK(strstr(err.message, "quote inside an unquoted field") != NULL);
        mp_error_clear(&err);
        csv("L,L\n1,2\n", -EINVAL, &err);
        CHECK_STR(err.message, "CSV line 1, column 2 (\"L\"): a header names a parameter twice");
        mp_error_clear(&err);
        csv("L,,F\n1,2,3\n", -EINVAL, &err);
        CHECK(strstr(err.message, "line 1, column 2") != NULL);
        mp_error_clear(&err);
        csv("L\n\"a\"b\n", -EINVAL, &err);
        CHECK(strstr(err.message, "text after the closing quote") != NULL);
        mp_error_clear(&err);
        csv("L\n\xff\xfe\n", -EINVAL, &err);
        CHECK(strstr(err.message, "line 2, column 1 (\"L\"): a field is not valid UTF-8") != NULL);
        mp_error_clear(&err);
        csv("L\n", -EINVAL, &err);
        CHECK_STR(err.message, "the CSV has a header but no points");
        mp_error_clear(&err);
        csv("", -EINVAL, &err);
        CHECK_STR(err.message, "the CSV has no header line");
        mp_error_clear(&err);
}

TEST(csv_sizes_are_capped) {
        struct mp_error err = { 0 };
        size_t n = MP_MAX_CSV_FIELD_BYTES + 10;
        char *big = malloc(n + 8);
        memcpy(big, "L\n\"", 3);
        memset(big + 3, 'x', n);
        strcpy(big + 3 + n, "\"\n");
        CHECK(csv(big, -EINVAL, &err) == NULL);
        CHECK(strstr(err.message, "line 2, column 1 (\"L\"): a field is longer than 4096 bytes") != NULL);
        mp_error_clear(&err);
        free(big);
        /* MP_MAX_STUDY_POINTS + 1 rows: refused at the row past the limit. */
        struct { char *d; size_t len; } t = { malloc(2 + 2 * (MP_MAX_STUDY_POINTS + 1) + 1), 0 };
        memcpy(t.d, "L\n", 2);
        t.len = 2;
        for (int i = 0; i <= MP_MAX_STUDY_POINTS; i++) {
                t.d[t.len++] = '1';
                t.d[t.len++] = '\n';
        }
        t.d[t.len] = 0;
        CHECK(csv(t.d, -EINVAL, &err) == NULL);
        CHECK(strstr(err.message, "line 100002, column 1 (\"L\"): more than 100000 rows") != NULL);
        mp_error_clear(&err);
        free(t.d);
}

/* --- workflow definitions --- */

/* The functions a test caller may run, with what the store would say of them. */
static int resolve(void *userdata, const char *function, int version, json_t **ret, struct mp_error *err) {
        static const struct {
                const char *name, *id;
                int latest;
                const char *input_schema, *result_schema;
        } fns[] = {
                { "cantilever", "fn-cantilever", 3,
                  "{\"type\":\"object\",\"properties\":{\"F\":{\"type\":\"number\"},\"L\":{\"type\":\"number\"},"
                  "\"E\":{\"type\":\"number\",\"default\":2.1e11}},\"required\":[\"F\",\"L\"],\"additionalProperties\":false}",
                  "{\"type\":\"object\",\"properties\":{\"moment_max\":{\"type\":\"number\"},"
                  "\"label\":{\"type\":\"string\"},\"rows\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
                  "\"properties\":{\"sigma\":{\"type\":\"number\"}}}}}}" },
                { "bending-stress", "fn-stress", 1,
                  "{\"type\":\"object\",\"properties\":{\"M\":{\"type\":\"number\"},\"W\":{\"type\":\"number\"}},"
                  "\"required\":[\"M\",\"W\"],\"additionalProperties\":false}",
                  "{\"type\":\"object\",\"properties\":{\"sigma\":{\"type\":\"number\"}}}" },
                { "square", "fn-square", 2,
                  "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\"},\"k\":{\"type\":\"integer\"}},"
                  "\"required\":[\"x\"],\"additionalProperties\":false}",
                  NULL },
                { "names", "fn-names", 1,
                  "{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\"}},\"required\":[\"s\"]}",
                  "{\"type\":\"array\",\"items\":{\"type\":\"string\"}}" },
        };
        (void) userdata;
        (void) err;
        if (!strcmp(function, "secret"))
                return -EACCES;
        for (size_t i = 0; i < ELEMENTSOF(fns); i++) {
                if (strcmp(function, fns[i].name) && strcmp(function, fns[i].id))
                        continue;
                if (version > fns[i].latest)
                        return -ENOENT;
                *ret = json_pack("{s:s,s:i,s:o}", "function_id", fns[i].id, "version", version ? version : fns[i].latest,
                                 "input_schema", json_loads(fns[i].input_schema, 0, NULL));
                if (fns[i].result_schema)
                        json_object_set_new(*ret, "result_schema", json_loads(fns[i].result_schema, 0, NULL));
                return 0;
        }
        return -ENOENT;
}

static const char *beam_check =
        "{\"name\": \"beam-check\", \"description\": \"\", \"cache\": true,"
        " \"nodes\": ["
        "  {\"id\": \"stress\", \"function\": \"bending-stress\","
        "   \"inputs\": {\"M\": {\"from\": \"beam\", \"path\": \"moment_max\"}, \"W\": 1.2e-4}},"
        "  {\"id\": \"beam\", \"function\": \"cantilever\", \"version\": 2, \"inputs\": {\"F\": {\"param\": \"F\"}, \"L\": {\"param\": \"L\"},"
        "   \"E\": {\"param\": \"E\"}}},"
        "  {\"id\": \"each\", \"function\": \"square\","
        "   \"map\": {\"over\": {\"param\": \"xs\"}, \"as\": \"x\", \"concurrency\": 4, \"skip_failures\": true},"
        "   \"inputs\": {\"k\": 2}}],"
        " \"outputs\": {\"sigma\": {\"from\": \"stress\", \"path\": \"sigma\"}, \"squares\": {\"from\": \"each\"}}}";

static json_t *parse_def(const char *text, int want_rc, struct mp_error *err) {
        json_t *body = J(text), *def = NULL;
        CHECK_INT(mp_workflow_def_parse(body, resolve, NULL, &def, err), ==, want_rc);
        json_decref(body);
        return def;
}

TEST(definition_is_normalized) {
        struct mp_error err = { 0 };
        json_t *def = parse_def(beam_check, 0, &err);
        json_t *nodes = json_object_get(def, "nodes");

        REQUIRE(def);
        CHECK_STR(dump(json_object_get(def, "name")), "\"beam-check\"");
        CHECK(json_is_true(json_object_get(def, "cache")));
        /* Topological order (beam before stress), functions pinned to ids and versions. */
        CHECK_STR(json_string_value(json_object_get(json_array_get(nodes, 0), "id")), "beam");
        CHECK_STR(json_string_value(json_object_get(json_array_get(nodes, 1), "id")), "stress");
        CHECK_STR(json_string_value(json_object_get(json_array_get(nodes, 2), "id")), "each");
        CHECK_STR(json_string_value(json_object_get(json_array_get(nodes, 0), "function_id")), "fn-cantilever");
        CHECK_INT(json_integer_value(json_object_get(json_array_get(nodes, 0), "version")), ==, 2);
        CHECK_INT(json_integer_value(json_object_get(json_array_get(nodes, 2), "version")), ==, 2); /* latest at save */
        CHECK_STR(dump(json_object_get(json_array_get(nodes, 1), "depends_on")), "[\"beam\"]");
        CHECK_STR(dump(json_object_get(json_array_get(nodes, 2), "map")),
                  "{\"over\":{\"param\":\"xs\"},\"as\":\"x\",\"concurrency\":4,\"skip_failures\":true}");
        /* The input schema, derived: types from the functions, E optional (it has a default). */
        CHECK_STR(dump(json_object_get(def, "input_schema")),
                  "{\"type\":\"object\",\"properties\":{\"F\":{\"type\":\"number\"},\"L\":{\"type\":\"number\"},"
                  "\"E\":{\"type\":\"number\"},\"xs\":{\"type\":\"array\",\"items\":{\"type\":\"number\"}}},"
                  "\"required\":[\"F\",\"L\",\"xs\"],\"additionalProperties\":false}");
        json_decref(def);
}

TEST(definition_reports_every_problem) {
        struct mp_error err = { 0 };
        json_t *def = parse_def(
                "{\"name\": \"bad\", \"params\": {\"F\": {\"type\": \"number\"}, \"L\": {\"type\": \"string\"}},"
                " \"nodes\": ["
                "  {\"id\": \"beam\", \"function\": \"cantilever\", \"inputs\": {\"F\": {\"param\": \"F\"}, \"L\": {\"param\": \"L\"}}},"
                "  {\"id\": \"beam\", \"function\": \"square\", \"inputs\": {\"x\": 1}},"
                "  {\"id\": \"a.b\", \"function\": \"square\", \"inputs\": {\"x\": 1}},"
                "  {\"id\": \"s\", \"function\": \"bending-stress\", \"inputs\": {\"M\": {\"from\": \"beam\", \"path\": \"label\"},"
                "   \"W\": \"wide\", \"Q\": {\"param\": \"G\"}, \"Z\": {\"from\": \"nowhere\"}, \"Y\": {\"from\": \"beam\", \"extra\": 1}}},"
                "  {\"id\": \"t\", \"function\": \"bending-stress\", \"inputs\": {\"W\": 1, \"M\": {\"from\": \"beam\", \"path\": \"rows..x\"}}},"
                "  {\"id\": \"u\", \"function\": \"nope\"},"
                "  {\"id\": \"v\", \"function\": \"secret\"},"
                "  {\"id\": \"w\", \"function\": \"square\", \"version\": 9, \"inputs\": {\"x\": 1}},"
                "  {\"id\": \"m\", \"function\": \"square\", \"inputs\": {\"x\": 1},"
                "   \"map\": {\"over\": {\"from\": \"beam\", \"path\": \"moment_max\"}, \"as\": \"y\", \"concurrency\": 0, \"skip_failures\": 1}},"
                "  {\"id\": \"z\", \"function\": \"square\", \"inputs\": {\"x\": 1}, \"input\": {}}],"
                " \"outputs\": {\"r\": {\"from\": \"ghost\"}, \"q\": 3}}",
                -EINVAL, &err);
        CHECK(def == NULL);
        CHECK_INT(err.status, ==, 422);
        CHECK_STR(err.code, "validation");
        CHECK_FIELD(&err, "nodes[0].inputs.L", "expects a number, but parameter \"L\" is a string");
        CHECK_FIELD(&err, "nodes[1].id", "repeats the id \"beam\"");
        CHECK_FIELD(&err, "nodes[2].id", "letters, digits");
        CHECK_FIELD(&err, "nodes[3].inputs.M", "expects a number, but node \"beam\" gives a string at label");
        CHECK_FIELD(&err, "nodes[3].inputs.W", "expected a number, got a string");
        CHECK_FIELD(&err, "nodes[3].inputs.Q", "not an input of function \"bending-stress\"");
        CHECK_FIELD(&err, "nodes[3].inputs.Q.param", "names no parameter of this workflow (\"G\")");
        CHECK_FIELD(&err, "nodes[3].inputs.Z.from", "names no node of this workflow (\"nowhere\")");
        CHECK_FIELD(&err, "nodes[3].inputs.Y", "must be a literal, {\"param\": name} or {\"from\"");
        CHECK_FIELD(&err, "nodes[4].inputs.M.path", "empty segment");
        CHECK_FIELD(&err, "nodes[5].function", "no function \"nope\" that you may run");
        CHECK_FIELD(&err, "nodes[6].function", "no function \"secret\" that you may run");
        CHECK_FIELD(&err, "nodes[7].version", "function \"square\" has no version 9");
        CHECK_FIELD(&err, "nodes[8].map.over", "maps over node \"beam\" at moment_max, which gives a number, not a list");
        CHECK_FIELD(&err, "nodes[8].map.as", "not an input of function \"square\"");
        CHECK_FIELD(&err, "nodes[8].map.concurrency", "from 1 to 64");
        CHECK_FIELD(&err, "nodes[8].map.skip_failures", "true or false");
        CHECK_FIELD(&err, "nodes[9].input", "not a field of a node");
        CHECK_FIELD(&err, "outputs.r.from", "names no node");
        CHECK_FIELD(&err, "outputs.q", "{\"from\": node");
        CHECK(strstr(err.message, "workflow fields are invalid") != NULL);
        mp_error_clear(&err);
}

TEST(definition_requires_function_inputs) {
        struct mp_error err = { 0 };
        parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"s\", \"function\": \"bending-stress\", \"inputs\": {\"W\": 1}},"
                  "{\"id\": \"q\", \"function\": \"square\", \"map\": {\"over\": {\"param\": \"xs\"}, \"as\": \"x\"}}]}",
                  -EINVAL, &err);
        CHECK_FIELD(&err, "nodes[0].inputs.M", "is required by function \"bending-stress\"");
        CHECK(!has_field(&err, "nodes[1].inputs.x", NULL)); /* the map gives it */
        CHECK_INT(json_array_size(err.errors), ==, 1);
        mp_error_clear(&err);
        parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"s\", \"function\": \"bending-stress\"}]}", -EINVAL, &err);
        CHECK_FIELD(&err, "nodes[0].inputs.M", "is required");
        CHECK_FIELD(&err, "nodes[0].inputs.W", "is required");
        mp_error_clear(&err);
}

TEST(definition_derived_params_must_agree_on_types) {
        struct mp_error err = { 0 };
        parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": {\"param\": \"p\"}}},"
                  "{\"id\": \"b\", \"function\": \"names\", \"inputs\": {\"s\": {\"param\": \"p\"}}}]}",
                  -EINVAL, &err);
        CHECK_FIELD(&err, "nodes[1].inputs.s", "expects a string, but parameter \"p\" is a number");
        mp_error_clear(&err);
        /* Without a resolver, functions are not checked: ids are as given, versions 0 or pinned. */
        json_t *body = J("{\"name\": \"x\", \"nodes\": [{\"id\": \"a\", \"function\": \"anything\", \"version\": 4,"
                         " \"inputs\": {\"x\": {\"param\": \"p\"}}}]}"), *def = NULL;
        CHECK_INT(mp_workflow_def_parse(body, NULL, NULL, &def, &err), ==, 0);
        CHECK_STR(dump(json_object_get(json_array_get(json_object_get(def, "nodes"), 0), "function_id")), "\"anything\"");
        CHECK_STR(dump(json_object_get(json_array_get(json_object_get(def, "nodes"), 0), "version")), "4");
        CHECK_STR(dump(json_object_get(json_object_get(def, "input_schema"), "properties")), "{\"p\":{}}");
        json_decref(def);
        json_decref(body);
}

TEST(definition_keeps_a_layout) {
        struct mp_error err = { 0 };
        json_t *def = parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": 1}}],"
                                " \"layout\": {\"a\": {\"x\": 12.5, \"y\": -40}}}", 0, &err);
        REQUIRE(def);
        CHECK_STR(dump(json_object_get(def, "layout")), "{\"a\":{\"x\":12.5,\"y\":-40}}");
        json_decref(def);
        /* Absent: none in the definition. */
        def = parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": 1}}]}", 0, &err);
        CHECK(json_object_get(def, "layout") == NULL);
        json_decref(def);
        /* An unknown node, a position that is not two numbers, one too far. */
        parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": 1}}],"
                  " \"layout\": {\"zz\": {\"x\": 1, \"y\": 2}}}", -EINVAL, &err);
        CHECK_FIELD(&err, "layout.zz", "names no node of this workflow");
        mp_error_clear(&err);
        parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": 1}}],"
                  " \"layout\": {\"a\": {\"x\": \"1\", \"y\": 2}}}", -EINVAL, &err);
        CHECK_FIELD(&err, "layout.a", "must be {\"x\": number, \"y\": number}, each within +-1000000");
        mp_error_clear(&err);
        parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": 1}}],"
                  " \"layout\": {\"a\": {\"x\": 1e9, \"y\": 2}}}", -EINVAL, &err);
        CHECK_FIELD(&err, "layout.a", "must be {\"x\": number, \"y\": number}, each within +-1000000");
        mp_error_clear(&err);
        parse_def("{\"name\": \"x\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": 1}}],"
                  " \"layout\": [1]}", -EINVAL, &err);
        CHECK_FIELD(&err, "layout", "must be an object of at most 200 {node id: {\"x\", \"y\"}}");
        mp_error_clear(&err);
}

TEST(definition_cycles_are_named_in_order) {
        struct mp_error err = { 0 };
        parse_def("{\"name\": \"loop\", \"nodes\": ["
                  " {\"id\": \"start\", \"function\": \"square\", \"inputs\": {\"x\": 1}},"
                  " {\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": {\"from\": \"c\"}, \"k\": {\"from\": \"start\"}}},"
                  " {\"id\": \"b\", \"function\": \"square\", \"inputs\": {\"x\": {\"from\": \"a\"}}},"
                  " {\"id\": \"c\", \"function\": \"square\", \"inputs\": {\"x\": {\"from\": \"b\"}}}]}",
                  -EINVAL, &err);
        CHECK_FIELD(&err, "nodes", "form a cycle: a -> b -> c -> a");
        mp_error_clear(&err);
        parse_def("{\"name\": \"self\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": {\"from\": \"a\"}}}]}",
                  -EINVAL, &err);
        CHECK_FIELD(&err, "nodes", "form a cycle: a -> a");
        mp_error_clear(&err);
        /* Reported with the other problems, not instead of them. */
        parse_def("{\"name\": \"both\", \"nodes\": [{\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": {\"from\": \"b\"}}},"
                  "{\"id\": \"b\", \"function\": \"names\", \"inputs\": {\"s\": {\"from\": \"a\"}, \"t\": {\"param\": \"p q\"}}}]}",
                  -EINVAL, &err);
        CHECK_FIELD(&err, "nodes", "form a cycle: a -> b -> a");
        CHECK_FIELD(&err, "nodes[1].inputs.t.param", "parameter name");
        mp_error_clear(&err);
}

TEST(definition_limits) {
        struct mp_error err = { 0 };
        char *text = malloc(64 * (MP_MAX_WORKFLOW_NODES + 2) + 64);
        size_t off = (size_t) sprintf(text, "{\"name\": \"big\", \"nodes\": [");
        for (int i = 0; i <= MP_MAX_WORKFLOW_NODES; i++)
                off += (size_t) sprintf(text + off, "%s{\"id\": \"n%d\", \"function\": \"square\", \"inputs\": {\"x\": 1}}",
                                        i ? "," : "", i);
        strcpy(text + off, "]}");
        parse_def(text, -EINVAL, &err);
        CHECK_FIELD(&err, "nodes", "more than 200 nodes");
        mp_error_clear(&err);
        free(text);
        /* A literal nested past the limit, and a definition past the byte cap. */
        parse_def("{\"name\": \"deep\", \"nodes\": [{\"id\": \"a\", \"function\": \"names\", \"inputs\": {\"s\": \"x\","
                  " \"t\": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}}]}", -EINVAL, &err);
        CHECK_FIELD(&err, "nodes[0].inputs.t", "nested deeper than 16 levels");
        mp_error_clear(&err);
        json_t *body = J("{\"name\": \"huge\", \"nodes\": [{\"id\": \"a\", \"function\": \"names\", \"inputs\": {}}]}"), *def = NULL;
        char *blob = malloc(MP_MAX_WORKFLOW_BYTES + 1);
        memset(blob, 'x', MP_MAX_WORKFLOW_BYTES);
        blob[MP_MAX_WORKFLOW_BYTES] = 0;
        json_object_set_new(json_object_get(json_array_get(json_object_get(body, "nodes"), 0), "inputs"), "s", json_string(blob));
        CHECK_INT(mp_workflow_def_parse(body, resolve, NULL, &def, &err), ==, -EINVAL);
        CHECK_FIELD(&err, "body", "larger than 262144 bytes");
        mp_error_clear(&err);
        free(blob);
        json_decref(body);
}

TEST(definition_declared_params_and_default_outputs) {
        struct mp_error err = { 0 };
        json_t *def = parse_def("{\"name\": \"p\", \"params\": {\"F\": {\"type\": \"number\"}, \"L\": {\"type\": \"number\", \"default\": 2}},"
                                " \"nodes\": [{\"id\": \"beam\", \"function\": \"cantilever\","
                                "  \"inputs\": {\"F\": {\"param\": \"F\"}, \"L\": {\"param\": \"L\"},"
                                "   \"E\": {\"literal\": {\"from\": \"not a reference\"}}}},"
                                "  {\"id\": \"s\", \"function\": \"bending-stress\", \"inputs\": {\"M\": {\"from\": \"beam\", \"path\": \"rows.0.sigma\"}, \"W\": 1}}]}",
                                -EINVAL, &err);
        /* {"literal"} is a literal: checked against E's schema (a number), not read as a reference. */
        CHECK_FIELD(&err, "nodes[0].inputs.E", "expected a number, got an object");
        CHECK_INT(json_array_size(err.errors), ==, 1);
        mp_error_clear(&err);
        def = parse_def("{\"name\": \"p\", \"params\": {\"F\": {\"type\": \"number\"}, \"L\": {\"type\": \"number\", \"default\": 2}},"
                        " \"nodes\": [{\"id\": \"beam\", \"function\": \"cantilever\", \"inputs\": {\"F\": {\"param\": \"F\"}, \"L\": {\"param\": \"L\"}}},"
                        "  {\"id\": \"s\", \"function\": \"bending-stress\", \"inputs\": {\"M\": {\"from\": \"beam\", \"path\": \"rows.0.sigma\"}, \"W\": 1}}]}",
                        0, &err);
        REQUIRE(def);
        CHECK_STR(dump(json_object_get(json_object_get(def, "input_schema"), "required")), "[\"F\"]");
        CHECK_STR(dump(json_object_get(def, "outputs")), "{\"s\":{\"from\":\"s\"}}");
        json_decref(def);
}

/* --- runs --- */

struct run {
        json_t *def, *inputs, *state, *starts;
};

static void run_start(struct run *r, const char *def_text, const char *inputs) {
        struct mp_error err = { 0 };
        r->def = parse_def(def_text, 0, &err);
        r->inputs = J(inputs);
        r->state = r->def ? mp_flow_run_new(r->def) : NULL;
        r->starts = NULL;
}

static void run_free(struct run *r) {
        json_decref(r->def);
        json_decref(r->inputs);
        json_decref(r->state);
        json_decref(r->starts);
}

/* One step; returns the starts as "node[element]" joined by spaces, and gives each a task id. */
static const char *step(struct run *r) {
        static char text[4096];
        struct mp_error err = { 0 };
        json_t *s;
        size_t i, off = 0;
        int n;

        json_decref(r->starts);
        r->starts = NULL;
        n = mp_flow_run_next(r->def, r->inputs, r->state, &r->starts, &err);
        CHECK_INT(n, >=, 0);
        text[0] = 0;
        json_array_foreach(r->starts, i, s) {
                const char *node = json_string_value(json_object_get(s, "node"));
                int el = (int) json_integer_value(json_object_get(s, "element"));
                char task[96];
                snprintf(task, sizeof(task), "task-%s-%d", node, el);
                CHECK_INT(mp_flow_run_set_task(r->state, node, el, task), ==, 0);
                if (el >= 0)
                        off += (size_t) snprintf(text + off, sizeof(text) - off, "%s%s[%d]", i ? " " : "", node, el);
                else
                        off += (size_t) snprintf(text + off, sizeof(text) - off, "%s%s", i ? " " : "", node);
        }
        return text;
}

static json_t *start_inputs(struct run *r, const char *node, int element) {
        json_t *s;
        size_t i;
        json_array_foreach(r->starts, i, s)
                if (!strcmp(json_string_value(json_object_get(s, "node")), node) &&
                    json_integer_value(json_object_get(s, "element")) == element)
                        return json_object_get(s, "inputs");
        return NULL;
}

static void done(struct run *r, const char *node, int element, const char *result) {
        json_t *v = J(result);
        CHECK_INT(mp_flow_run_task_ended(r->def, r->state, node, element, "completed", v, NULL), ==, 0);
        json_decref(v);
}

static void failed(struct run *r, const char *node, int element, const char *message) {
        json_t *e = json_pack("{s:s,s:s}", "type", "ValueError", "message", message);
        CHECK_INT(mp_flow_run_task_ended(r->def, r->state, node, element, "failed", NULL, e), ==, 0);
        json_decref(e);
}

static const char *node_field(struct run *r, const char *node, const char *key) {
        static char text[2048];
        snprintf(text, sizeof(text), "%s", dump(json_object_get(json_object_get(json_object_get(r->state, "nodes"), node), key)));
        return text;
}

static const char *chain =
        "{\"name\": \"chain\", \"nodes\": ["
        " {\"id\": \"beam\", \"function\": \"cantilever\", \"inputs\": {\"F\": {\"param\": \"F\"}, \"L\": {\"param\": \"L\"},"
        "  \"E\": {\"param\": \"E\"}}},"
        " {\"id\": \"stress\", \"function\": \"bending-stress\","
        "  \"inputs\": {\"M\": {\"from\": \"beam\", \"path\": \"moment_max\"}, \"W\": 1.2e-4}},"
        " {\"id\": \"label\", \"function\": \"names\", \"inputs\": {\"s\": {\"from\": \"beam\", \"path\": \"label\"}}}],"
        " \"outputs\": {\"sigma\": {\"from\": \"stress\", \"path\": \"sigma\"}, \"beam\": {\"from\": \"beam\"}}}";

TEST(run_chain_resolves_inputs_and_ends_with_outputs) {
        struct run r;
        run_start(&r, chain, "{\"F\": 1000, \"L\": 2}");
        REQUIRE(r.state);

        CHECK_STR(step(&r), "beam");
        CHECK_STR(dump(start_inputs(&r, "beam", -1)), "{\"F\":1000,\"L\":2}"); /* E left out: its default applies */
        CHECK_STR(dump(json_object_get(json_array_get(r.starts, 0), "function_id")), "\"fn-cantilever\"");
        CHECK_STR(step(&r), ""); /* nothing new while beam runs */
        done(&r, "beam", -1, "{\"moment_max\": 2000.0, \"label\": \"B1\"}");
        CHECK_STR(step(&r), "stress label"); /* independent branches start together */
        CHECK_STR(dump(start_inputs(&r, "stress", -1)), "{\"M\":2000.0,\"W\":0.00012}");
        CHECK_STR(dump(start_inputs(&r, "label", -1)), "{\"s\":\"B1\"}");
        done(&r, "stress", -1, "{\"sigma\": 16.7e6}");
        CHECK_STR(step(&r), "");
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"running\"");
        done(&r, "label", -1, "[\"B1\"]");
        CHECK_STR(step(&r), "");
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"completed\"");
        CHECK_STR(dump(json_object_get(r.state, "outputs")),
                  "{\"sigma\":16700000.0,\"beam\":{\"moment_max\":2000.0,\"label\":\"B1\"}}");
        /* A second end of the same call is refused, not counted twice. */
        CHECK_INT(mp_flow_run_task_ended(r.def, r.state, "beam", -1, "completed", NULL, NULL), ==, -EALREADY);
        CHECK_INT(mp_flow_run_task_ended(r.def, r.state, "ghost", -1, "completed", NULL, NULL), ==, -ENOENT);
        run_free(&r);
}

static const char *diamond =
        "{\"name\": \"diamond\", \"nodes\": ["
        " {\"id\": \"a\", \"function\": \"square\", \"inputs\": {\"x\": {\"param\": \"x\"}}},"
        " {\"id\": \"b\", \"function\": \"square\", \"inputs\": {\"x\": {\"from\": \"a\"}}},"
        " {\"id\": \"c\", \"function\": \"square\", \"inputs\": {\"x\": {\"from\": \"a\"}}},"
        " {\"id\": \"d\", \"function\": \"bending-stress\", \"inputs\": {\"M\": {\"from\": \"b\"}, \"W\": {\"from\": \"c\"}}},"
        " {\"id\": \"e\", \"function\": \"square\", \"inputs\": {\"x\": {\"from\": \"d\", \"path\": \"sigma\"}}}]}";

TEST(run_failure_skips_only_downstream_then_retry_reruns_only_that) {
        struct run r;
        run_start(&r, diamond, "{\"x\": 3}");
        REQUIRE(r.state);

        CHECK_STR(step(&r), "a");
        done(&r, "a", -1, "9");
        CHECK_STR(step(&r), "b c");
        failed(&r, "b", -1, "math domain error");
        CHECK_STR(step(&r), "");
        CHECK_STR(node_field(&r, "d", "status"), "\"skipped\"");
        CHECK_STR(node_field(&r, "d", "skipped_reason"), "\"upstream node \\\"b\\\" failed\"");
        CHECK_STR(node_field(&r, "e", "skipped_reason"), "\"upstream node \\\"b\\\" failed\""); /* the root, not d */
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"running\""); /* c still runs */
        done(&r, "c", -1, "81");
        CHECK_STR(step(&r), "");
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"failed\"");
        CHECK_STR(dump(json_object_get(json_object_get(r.state, "error"), "message")),
                  "\"node \\\"b\\\" failed: math domain error\"");

        /* Retry: b, d and e again; a and c keep their results and do not start. */
        CHECK_INT(mp_flow_run_retry(r.def, r.state), ==, 3);
        CHECK_STR(node_field(&r, "a", "result"), "9");
        CHECK_STR(node_field(&r, "c", "task_id"), "\"task-c--1\"");
        CHECK_STR(step(&r), "b");
        CHECK_STR(dump(start_inputs(&r, "b", -1)), "{\"x\":9}");
        CHECK_INT(mp_flow_run_retry(r.def, r.state), ==, -EBUSY);
        done(&r, "b", -1, "81");
        CHECK_STR(step(&r), "d");
        CHECK_STR(dump(start_inputs(&r, "d", -1)), "{\"M\":81,\"W\":81}");
        done(&r, "d", -1, "{\"sigma\": 1}");
        CHECK_STR(step(&r), "e");
        done(&r, "e", -1, "1");
        CHECK_STR(step(&r), "");
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"completed\"");
        CHECK_STR(dump(json_object_get(r.state, "outputs")), "{\"e\":1}"); /* the one node nothing reads */
        CHECK_INT(mp_flow_run_retry(r.def, r.state), ==, 0); /* nothing failed */
        run_free(&r);
}

TEST(run_declared_param_defaults_apply) {
        struct run r;
        run_start(&r, "{\"name\": \"p\", \"params\": {\"F\": {\"type\": \"number\"}, \"L\": {\"type\": \"number\", \"default\": 2.5}},"
                      " \"nodes\": [{\"id\": \"beam\", \"function\": \"cantilever\", \"inputs\": {\"F\": {\"param\": \"F\"}, \"L\": {\"param\": \"L\"}}}]}",
                  "{\"F\": 10}");
        REQUIRE(r.state);
        CHECK_STR(step(&r), "beam");
        CHECK_STR(dump(start_inputs(&r, "beam", -1)), "{\"F\":10,\"L\":2.5}");
        run_free(&r);
}

TEST(run_path_that_resolves_nothing_fails_the_node) {
        struct run r;
        run_start(&r, chain, "{\"F\": 1, \"L\": 2}");
        REQUIRE(r.state);
        CHECK_STR(step(&r), "beam");
        done(&r, "beam", -1, "{\"label\": \"B\"}"); /* no moment_max */
        CHECK_STR(step(&r), "label");
        CHECK_STR(node_field(&r, "stress", "status"), "\"failed\"");
        CHECK_STR(node_field(&r, "stress", "error"),
                  "{\"type\":\"WorkflowInput\",\"message\":\"input \\\"M\\\": path \\\"moment_max\\\" of node \\\"beam\\\": no key \\\"moment_max\\\" in the value\"}");
        run_free(&r);
}

#define MAPPED \
        "{\"name\": \"map\", \"nodes\": [" \
        " {\"id\": \"each\", \"function\": \"square\", \"inputs\": {\"k\": 2}," \
        "  \"map\": {\"over\": {\"param\": \"xs\"}, \"as\": \"x\", \"concurrency\": 4, \"skip_failures\": %s}}," \
        " {\"id\": \"after\", \"function\": \"names\", \"inputs\": {\"s\": {\"from\": \"each\"}}}]}"

static void run_map(struct run *r, bool skip) {
        char text[1024];
        snprintf(text, sizeof(text), MAPPED, skip ? "true" : "false");
        run_start(r, text, "{\"xs\": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19]}");
}

TEST(run_map_with_skip_failures_collects_in_order) {
        struct run r;
        int started = 0, running = 0, max_running = 0;
        run_map(&r, true);
        REQUIRE(r.state);

        /* Drive it: elements end in reverse order of start; 5 and 12 fail. */
        for (int guard = 0; guard < 100; guard++) {
                const char *s = step(&r);
                json_t *st;
                size_t i;
                (void) s;
                running += (int) json_array_size(r.starts);
                started += (int) json_array_size(r.starts);
                max_running = MP_MAX(max_running, running);
                json_array_foreach(r.starts, i, st) {
                        const char *node = json_string_value(json_object_get(st, "node"));
                        if (!strcmp(node, "after"))
                                CHECK_STR(dump(json_object_get(st, "inputs")),
                                          "{\"s\":[0,2,4,6,8,null,12,14,16,18,20,22,null,26,28,30,32,34,36,38]}");
                        CHECK_INT(json_integer_value(json_object_get(json_object_get(st, "inputs"), "k")), ==,
                                  strcmp(node, "each") ? 0 : 2);
                }
                for (size_t k = json_array_size(r.starts); k-- > 0;) {
                        json_t *st2 = json_array_get(r.starts, k);
                        const char *node = json_string_value(json_object_get(st2, "node"));
                        int el = (int) json_integer_value(json_object_get(st2, "element"));
                        char res[32];
                        json_int_t x = json_integer_value(json_object_get(json_object_get(st2, "inputs"), "x"));
                        running--;
                        if (!strcmp(node, "each") && (el == 5 || el == 12)) {
                                failed(&r, node, el, "odd one");
                                continue;
                        }
                        snprintf(res, sizeof(res), "%lld", (long long) (2 * x));
                        done(&r, node, el, strcmp(node, "each") ? "\"ok\"" : res);
                }
                if (strcmp(json_string_value(json_object_get(r.state, "status")), "running"))
                        break;
        }
        CHECK_INT(started, ==, 21);
        CHECK_INT(max_running, <=, 4);
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"completed\"");
        CHECK_STR(node_field(&r, "each", "element_errors"),
                  "[{\"index\":5,\"error\":{\"type\":\"ValueError\",\"message\":\"odd one\"}},"
                  "{\"index\":12,\"error\":{\"type\":\"ValueError\",\"message\":\"odd one\"}}]");

        /* Retry re-runs the 2 failed elements (and what read the map's result), no other. */
        CHECK_INT(mp_flow_run_retry(r.def, r.state), ==, 2);
        CHECK_STR(step(&r), "each[5] each[12]");
        CHECK_STR(dump(start_inputs(&r, "each", 12)), "{\"k\":2,\"x\":12}");
        done(&r, "each", 5, "10");
        done(&r, "each", 12, "24");
        CHECK_STR(step(&r), "after");
        CHECK_STR(dump(start_inputs(&r, "after", -1)),
                  "{\"s\":[0,2,4,6,8,10,12,14,16,18,20,22,24,26,28,30,32,34,36,38]}");
        run_free(&r);
}

TEST(run_map_without_skip_failures_stops_starting) {
        struct run r;
        run_map(&r, false);
        REQUIRE(r.state);
        CHECK_STR(step(&r), "each[0] each[1] each[2] each[3]");
        failed(&r, "each", 1, "bad");
        done(&r, "each", 0, "0");
        CHECK_STR(step(&r), ""); /* no new element after a failure */
        done(&r, "each", 2, "4");
        done(&r, "each", 3, "6");
        CHECK_STR(step(&r), "");
        CHECK_STR(node_field(&r, "each", "status"), "\"failed\"");
        CHECK_STR(dump(json_object_get(json_object_get(json_object_get(json_object_get(r.state, "nodes"), "each"), "error"), "message")),
                  "\"1 of 20 elements failed; element 1: bad\"");
        CHECK_STR(node_field(&r, "after", "skipped_reason"), "\"upstream node \\\"each\\\" failed\"");
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"failed\"");
        /* Retry: element 1 and the 16 never started run; 0, 2, 3 keep their results. */
        CHECK_INT(mp_flow_run_retry(r.def, r.state), ==, 2);
        CHECK_STR(step(&r), "each[1] each[4] each[5] each[6]");
        run_free(&r);
}

TEST(run_cancel_ends_a_map_node_when_its_elements_have) {
        struct run r;
        json_t *tasks = NULL;
        run_map(&r, true);
        REQUIRE(r.state);
        CHECK_STR(step(&r), "each[0] each[1] each[2] each[3]");
        done(&r, "each", 0, "0");
        CHECK_INT(mp_flow_run_cancel(r.state, &tasks), ==, 0);
        CHECK_STR(dump(tasks), "[\"task-each-1\",\"task-each-2\",\"task-each-3\"]");
        CHECK_STR(dump(json_object_get(json_array_get(json_object_get(json_object_get(json_object_get(r.state, "nodes"), "each"),
                                                                     "elements"), 4), "status")), "\"cancelled\"");
        CHECK_INT(mp_flow_run_task_ended(r.def, r.state, "each", 1, "cancelled", NULL, NULL), ==, 0);
        CHECK_INT(mp_flow_run_task_ended(r.def, r.state, "each", 2, "cancelled", NULL, NULL), ==, 0);
        CHECK_STR(step(&r), "");
        CHECK_STR(node_field(&r, "each", "status"), "\"running\""); /* element 3 still runs */
        CHECK_INT(mp_flow_run_task_ended(r.def, r.state, "each", 3, "completed", NULL, NULL), ==, 0);
        CHECK_STR(step(&r), "");
        CHECK_STR(node_field(&r, "each", "status"), "\"cancelled\"");
        CHECK(!mp_flow_run_busy(r.state));
        /* Retry: the 2 elements that completed are kept; the rest start, 4 at a time. */
        CHECK_INT(mp_flow_run_retry(r.def, r.state), ==, 2);
        CHECK_STR(step(&r), "each[1] each[2] each[4] each[5]");
        json_decref(tasks);
        run_free(&r);
}

TEST(run_map_over_a_non_list_or_empty_list) {
        struct run r;
        run_start(&r, "{\"name\": \"m\", \"nodes\": [{\"id\": \"each\", \"function\": \"square\","
                      " \"map\": {\"over\": {\"param\": \"xs\"}, \"as\": \"x\"}}]}", "{\"xs\": 3}");
        REQUIRE(r.state);
        CHECK_STR(step(&r), "");
        CHECK_STR(node_field(&r, "each", "error"),
                  "{\"type\":\"WorkflowInput\",\"message\":\"map.over: the value to map over is a number, not a list\"}");
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"failed\"");
        run_free(&r);
        run_start(&r, "{\"name\": \"m\", \"nodes\": [{\"id\": \"each\", \"function\": \"square\","
                      " \"map\": {\"over\": {\"param\": \"xs\"}, \"as\": \"x\"}}]}", "{\"xs\": []}");
        CHECK_STR(step(&r), "");
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"completed\"");
        CHECK_STR(dump(json_object_get(r.state, "outputs")), "{\"each\":[]}");
        run_free(&r);
}

TEST(run_recover_and_cancel) {
        struct run r;
        struct mp_error err = { 0 };
        json_t *tasks = NULL;
        run_start(&r, diamond, "{\"x\": 3}");
        REQUIRE(r.state);
        CHECK_STR(step(&r), "a");
        done(&r, "a", -1, "9");
        /* A step whose starts were never recorded (the server died before making tasks). */
        json_decref(r.starts);
        CHECK_INT(mp_flow_run_next(r.def, r.inputs, r.state, &r.starts, &err), ==, 2);
        CHECK_INT(mp_flow_run_recover(r.state), ==, 2);
        CHECK_STR(step(&r), "b c");
        CHECK_INT(mp_flow_run_recover(r.state), ==, 0); /* their tasks are known now */
        CHECK_INT(mp_flow_run_cancel(r.state, &tasks), ==, 0);
        CHECK_STR(dump(tasks), "[\"task-b--1\",\"task-c--1\"]");
        CHECK_STR(node_field(&r, "d", "status"), "\"cancelled\"");
        CHECK_STR(dump(json_object_get(r.state, "status")), "\"cancelled\"");
        CHECK(mp_flow_run_busy(r.state));
        CHECK_INT(mp_flow_run_retry(r.def, r.state), ==, -EBUSY);
        CHECK_INT(mp_flow_run_task_ended(r.def, r.state, "b", -1, "cancelled", NULL, NULL), ==, 0);
        done(&r, "c", -1, "81");
        CHECK_STR(step(&r), ""); /* a cancelled run starts nothing */
        CHECK(!mp_flow_run_busy(r.state));
        json_decref(tasks);
        CHECK_INT(mp_flow_run_cancel(r.state, &tasks), ==, -EALREADY);
        /* Retry after cancel: b, d, e run; a and c are kept. */
        CHECK_INT(mp_flow_run_retry(r.def, r.state), ==, 3);
        CHECK_STR(step(&r), "b");
        run_free(&r);
}

static const struct check_case cases[] = {
        CASE(path_reads_keys_and_indices),
        CASE(path_misses_name_the_segment),
        CASE(path_shape_is_checked),
        CASE(canonical_sorts_and_normalizes),
        CASE(canonical_refuses_what_has_no_form),
        CASE(cache_keys_agree_on_equal_inputs),
        CASE(grid_is_full_factorial_in_stable_order),
        CASE(grid_over_the_limit_is_refused_before_making_points),
        CASE(design_fields_are_all_reported),
        CASE(points_are_validated_naming_the_first_bad_one),
        CASE(random_generator_is_pinned),
        CASE(lhs_is_reproducible_and_stratified),
        CASE(random_design_is_reproducible),
        CASE(csv_reads_points),
        CASE(csv_errors_name_line_and_column),
        CASE(csv_sizes_are_capped),
        CASE(definition_is_normalized),
        CASE(definition_reports_every_problem),
        CASE(definition_requires_function_inputs),
        CASE(definition_derived_params_must_agree_on_types),
        CASE(definition_keeps_a_layout),
        CASE(definition_cycles_are_named_in_order),
        CASE(definition_limits),
        CASE(definition_declared_params_and_default_outputs),
        CASE(run_chain_resolves_inputs_and_ends_with_outputs),
        CASE(run_failure_skips_only_downstream_then_retry_reruns_only_that),
        CASE(run_declared_param_defaults_apply),
        CASE(run_path_that_resolves_nothing_fails_the_node),
        CASE(run_map_with_skip_failures_collects_in_order),
        CASE(run_map_without_skip_failures_stops_starting),
        CASE(run_cancel_ends_a_map_node_when_its_elements_have),
        CASE(run_map_over_a_non_list_or_empty_list),
        CASE(run_recover_and_cancel),
};

CHECK_MAIN(cases)
