/* exec/: calls through the real executor and sandbox (user namespaces required). */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "base/limits.h"
#include "base/util.h"
#include "check.h"
#include "exec-fixture.h"
#include "exec/exec-internal.h"
#include "exec/exec.h"

extern const char mp_guest_py[];

static struct mp_executor *ex;

static struct mp_executor *executor(void) {
        if (!ex) {
                struct mp_exec_config cfg = { .sandbox = true, .python = "/usr/bin/python3", .channels = 4 };
                struct mp_error err = { 0 };
                if (mp_executor_start(&cfg, &ex, &err) < 0) {
                        fprintf(stderr, "cannot start the executor: %s\n", err.message);
                        exit(2);
                }
        }
        return ex;
}

static const struct mp_limits small = { .timeout_s = 20, .memory_mb = 512, .cpus = 1, .max_procs = 16, .tmp_mb = 16 };

/* Run code's handler "main" with inputs (JSON text); 0 or -errno. */
static int run(const char *code, const char *inputs, struct mp_exec_result *res) {
        json_t *in = json_loads(inputs ? inputs : "{}", 0, NULL);
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = code, .handler = "main", .inputs = in, .limits = small };
        struct mp_error err = { 0 };
        int r = mp_executor_run(executor(), &req, res, &err);
        if (r < 0)
                fprintf(stderr, "  run: %s\n", err.message);
        json_decref(in);
        mp_error_clear(&err);
        return r;
}

static int analyze(const char *code, const char *handler, struct mp_exec_result *res) {
        json_t *policy = json_loads("{\"forbidden_imports\":[\"os\",\"subprocess\",\"socket\"],"
                                    "\"forbidden_calls\":[\"eval\",\"exec\"]}", 0, NULL);
        struct mp_exec_request req = { .op = MP_EXEC_ANALYZE, .code = code, .handler = handler, .policy = policy,
                                       .limits = small };
        struct mp_error err = { 0 };
        int r = mp_executor_run(executor(), &req, res, &err);
        if (r < 0)
                fprintf(stderr, "  analyze: %s\n", err.message);
        json_decref(policy);
        mp_error_clear(&err);
        return r;
}

static char *dump(json_t *j) {
        static char buf[8192];
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        snprintf(buf, sizeof(buf), "%s", s ? s : "(null)");
        free(s);
        return buf;
}

TEST(run_numbers) {
        struct mp_exec_result r;
        REQUIRE(run("def main(a: float, b: int = 2):\n    return {'sum': a + b, 'n': b}\n", "{\"a\": 1.5, \"b\": 3}",
                    &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "{\"n\":3,\"sum\":4.5}");
        CHECK_INT(r.wall_ms, >=, 0);
        CHECK_INT(r.peak_memory_kb, >, 0);
        mp_exec_result_clear(&r);
}

TEST(run_numpy_conversion) {
        struct mp_exec_result r;
        REQUIRE(run("import numpy as np\n"
                    "def main():\n    return {'a': np.arange(3) * 2, 'f': np.float64(2.5), 'i': np.int32(7), 't': (1, 2),"
                    " 'm': np.eye(2)}\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "{\"a\":[0,2,4],\"f\":2.5,\"i\":7,\"m\":[[1.0,0.0],[0.0,1.0]],\"t\":[1,2]}");
        mp_exec_result_clear(&r);
}

TEST(run_nan_becomes_null) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    return {'path': [1.0, 2.0, float('nan')], 'x': float('inf')}\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_STR(dump(r.result), "{\"path\":[1.0,2.0,null],\"x\":null}");
        CHECK(r.logs && strstr(r.logs, "mecapy: result.path[2] was NaN, returned as null"));
        CHECK(r.logs && strstr(r.logs, "result.x was inf"));
        mp_exec_result_clear(&r);
}

TEST(run_unserialisable_result) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    return {'f': open}\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(json_string_value(json_object_get(r.error, "type")), "TypeError");
        CHECK(strstr(json_string_value(json_object_get(r.error, "message")) ?: "", "result.f"));
        mp_exec_result_clear(&r);
}

TEST(run_exception_user_traceback) {
        struct mp_exec_result r;
        REQUIRE(run("def helper(x):\n    return 1 / x\n\ndef main(x):\n    return helper(x)\n", "{\"x\": 0}", &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(json_string_value(json_object_get(r.error, "type")), "ZeroDivisionError");
        const char *tb = json_string_value(json_object_get(r.error, "traceback"));
        CHECK(tb && strstr(tb, "File \"<function>\", line 2, in helper"));
        CHECK(tb && strstr(tb, "line 5, in main"));
        CHECK(tb && strstr(tb, "return 1 / x"));
        CHECK(tb && !strstr(tb, "<string>")); /* no guest frame */
        CHECK(tb && !strstr(tb, "op_run"));
        mp_exec_result_clear(&r);
}

TEST(run_stdout_captured) {
        struct mp_exec_result r;
        REQUIRE(run("import sys\ndef main():\n    print('hello from user')\n    print('to err', file=sys.stderr)\n    return 1\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK(r.logs && strstr(r.logs, "hello from user\n"));
        CHECK(r.logs && strstr(r.logs, "to err\n"));
        CHECK(!r.logs_truncated);
        mp_exec_result_clear(&r);
}

TEST(run_artifact) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    open('outputs/report.txt', 'w').write('deflection 3 mm')\n"
                    "    import os\n    os.symlink('/etc/passwd', 'outputs/link')\n    return 'done'\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_INT(r.n_artifacts, ==, 1); /* the symlink is not followed nor listed */
        if (r.n_artifacts == 1) {
                CHECK_STR(r.artifacts[0].name, "report.txt");
                CHECK_INT(r.artifacts[0].size, ==, 15);
                CHECK(r.artifacts[0].data && memcmp(r.artifacts[0].data, "deflection 3 mm", 15) == 0);
        }
        mp_exec_result_clear(&r);
}

/* Files in folders of outputs/ are artifacts named by their path; a symlinked file or
 * folder, and folders past MP_MAX_ARTIFACT_DEPTH, are not collected. */
TEST(run_artifact_folders) {
        struct mp_exec_result r;
        REQUIRE(run("import os\n"
                    "def main():\n"
                    "    os.makedirs('outputs/sub/deeper')\n"
                    "    open('outputs/sub/x.csv', 'w').write('a,b')\n"
                    "    open('outputs/sub/deeper/y.txt', 'w').write('y')\n"
                    "    open('outputs/top.txt', 'w').write('t')\n"
                    "    os.symlink('/etc', 'outputs/etc')\n"
                    "    os.symlink('/etc/passwd', 'outputs/sub/passwd')\n"
                    "    os.makedirs('outputs/' + '/'.join('d' * 9))\n"
                    "    open('outputs/' + '/'.join('d' * 9) + '/far.txt', 'w').write('f')\n"
                    "    open('outputs/' + '/'.join('d' * 8) + '/near.txt', 'w').write('n')\n"
                    "    return 'done'\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        REQUIRE(r.n_artifacts == 4);
        CHECK_STR(r.artifacts[0].name, "d/d/d/d/d/d/d/d/near.txt"); /* 8 folders: kept */
        CHECK_STR(r.artifacts[1].name, "sub/deeper/y.txt");
        CHECK_STR(r.artifacts[2].name, "sub/x.csv");
        CHECK_INT(r.artifacts[2].size, ==, 3);
        CHECK_STR(r.artifacts[3].name, "top.txt");
        mp_exec_result_clear(&r);
}

TEST(run_missing_handler) {
        struct mp_exec_result r;
        REQUIRE(run("def other():\n    return 1\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(json_string_value(json_object_get(r.error, "type")), "AttributeError");
        mp_exec_result_clear(&r);
}

TEST(run_syntax_error) {
        struct mp_exec_result r;
        REQUIRE(run("def main(:\n    pass\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(json_string_value(json_object_get(r.error, "type")), "SyntaxError");
        mp_exec_result_clear(&r);
}

TEST(run_bad_request_rejected) {
        struct mp_exec_result r;
        struct mp_error err = { 0 };
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = "x=1", .handler = "no such", .limits = small };
        CHECK_INT(mp_executor_run(executor(), &req, &r, &err), ==, -EINVAL);
        CHECK_STR(err.code, "validation");
        mp_error_clear(&err);
        req.handler = "main";
        req.limits.timeout_s = MP_MAX_TIMEOUT_S + 1;
        CHECK_INT(mp_executor_run(executor(), &req, &r, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "timeout_s"));
        mp_error_clear(&err);
}

static const char *SCHEMA_SRC =
        "from typing import Optional, List, Literal\n"
        "def beam(length: float, load: float = 1000.0, supports: Optional[int] = None,\n"
        "         points: List[float] = [0.0], mode: Literal['a', 'b'] = 'a', tags: list[str] | None = None,\n"
        "         flag: bool = False, name: str = 'x', anything=3, opts: dict[str, float] = {}):\n"
        "    \"\"\"Deflection of a simply supported beam.\n\n"
        "    Args:\n"
        "        length (float): Span in metres.\n"
        "        load: Point load in newtons,\n"
        "            at mid-span.\n"
        "    \"\"\"\n"
        "    return 0\n";

TEST(analyze_schema) {
        struct mp_exec_result r;
        REQUIRE(analyze(SCHEMA_SRC, "beam", &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        json_t *s = json_object_get(r.result, "input_schema");
        json_t *p = json_object_get(s, "properties");
        CHECK_STR(dump(json_object_get(p, "length")), "{\"description\":\"Span in metres.\",\"type\":\"number\"}");
        CHECK_STR(dump(json_object_get(p, "load")),
                  "{\"default\":1000.0,\"description\":\"Point load in newtons, at mid-span.\",\"type\":\"number\"}");
        CHECK_STR(dump(json_object_get(p, "supports")), "{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}],\"default\":null}");
        CHECK_STR(dump(json_object_get(p, "points")), "{\"default\":[0.0],\"items\":{\"type\":\"number\"},\"type\":\"array\"}");
        CHECK_STR(dump(json_object_get(p, "mode")), "{\"default\":\"a\",\"enum\":[\"a\",\"b\"]}");
        CHECK_STR(dump(json_object_get(p, "tags")),
                  "{\"anyOf\":[{\"items\":{\"type\":\"string\"},\"type\":\"array\"},{\"type\":\"null\"}],\"default\":null}");
        CHECK_STR(dump(json_object_get(p, "flag")), "{\"default\":false,\"type\":\"boolean\"}");
        CHECK_STR(dump(json_object_get(p, "anything")), "{\"default\":3}");
        CHECK_STR(dump(json_object_get(p, "opts")),
                  "{\"additionalProperties\":{\"type\":\"number\"},\"default\":{},\"type\":\"object\"}");
        CHECK_STR(dump(json_object_get(s, "required")), "[\"length\"]");
        CHECK(json_is_false(json_object_get(s, "additionalProperties")));
        CHECK_STR(json_string_value(json_object_get(s, "description")), "Deflection of a simply supported beam.");
        CHECK_STR(json_string_value(json_object_get(r.result, "description")), "Deflection of a simply supported beam.");
        CHECK_INT(json_array_size(json_object_get(r.result, "problems")), ==, 0);
        mp_exec_result_clear(&r);
}

TEST(analyze_numpy_docstring_kwargs) {
        struct mp_exec_result r;
        REQUIRE(analyze("def main(x: int, *args, **kw):\n"
                        "    \"\"\"Sum things.\n\n    Parameters\n    ----------\n    x : int\n        The count.\n\n"
                        "    Returns\n    -------\n    int\n    \"\"\"\n    return x\n",
                        "main", &r) == 0);
        json_t *s = json_object_get(r.result, "input_schema");
        CHECK_STR(dump(json_object_get(json_object_get(s, "properties"), "x")),
                  "{\"description\":\"The count.\",\"type\":\"integer\"}");
        CHECK(json_is_true(json_object_get(s, "additionalProperties")));
        mp_exec_result_clear(&r);
}

static const char *problem(json_t *res, size_t i, int *line) {
        json_t *p = json_array_get(json_object_get(res, "problems"), i);
        *line = (int) json_integer_value(json_object_get(p, "line"));
        return json_string_value(json_object_get(p, "message")) ?: "";
}

TEST(analyze_syntax_error) {
        struct mp_exec_result r;
        int line = 0;
        REQUIRE(analyze("x = 1\n\ndef main(:\n    pass\n", "main", &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK(strstr(problem(r.result, 0, &line), "SyntaxError"));
        CHECK_INT(line, ==, 3);
        mp_exec_result_clear(&r);
}

TEST(analyze_missing_handler) {
        struct mp_exec_result r;
        int line = 0;
        REQUIRE(analyze("def other():\n    pass\n", "main", &r) == 0);
        CHECK(strstr(problem(r.result, 0, &line), "no function named 'main'"));
        mp_exec_result_clear(&r);
}

TEST(analyze_forbidden_import_and_eval) {
        struct mp_exec_result r;
        int line = 0;
        REQUIRE(analyze("import math\nimport os.path\n\ndef main(s: str):\n    from subprocess import run\n"
                        "    return eval(s)\n",
                        "main", &r) == 0);
        CHECK_INT(json_array_size(json_object_get(r.result, "problems")), ==, 3);
        CHECK(strstr(problem(r.result, 0, &line), "'os'"));
        CHECK_INT(line, ==, 2);
        CHECK(strstr(problem(r.result, 1, &line), "'subprocess'"));
        CHECK_INT(line, ==, 5);
        CHECK(strstr(problem(r.result, 2, &line), "eval()"));
        CHECK_INT(line, ==, 6);
        mp_exec_result_clear(&r);
}

TEST(analyze_hostile_nesting) {
        struct mp_exec_result r;
        struct mp_buf b = { 0 };
        int line = 0;
        mp_buf_append(&b, "def main():\n    return ", 23);
        for (int i = 0; i < 200000; i++)
                mp_buf_append(&b, "(", 1);
        REQUIRE(analyze(b.data, "main", &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_INT(json_array_size(json_object_get(r.result, "problems")), >=, 1);
        problem(r.result, 0, &line);
        CHECK_INT(line, >=, 1);
        mp_exec_result_clear(&r);
        mp_buf_free(&b);
}

struct par {
        int i;
        int status;
        long long value;
        double from, to; /* when the call slept, by the guest's clock */
};

static void *par_call(void *arg) {
        struct par *p = arg;
        struct mp_exec_result r;
        char in[64];
        snprintf(in, sizeof(in), "{\"i\": %d}", p->i);
        p->status = -1;
        if (run("import time\ndef main(i):\n    t = time.time()\n    time.sleep(0.3)\n"
                "    return [i * i, t, time.time()]\n", in, &r) == 0) {
                p->status = (int) r.status;
                p->value = json_integer_value(json_array_get(r.result, 0));
                p->from = json_number_value(json_array_get(r.result, 1));
                p->to = json_number_value(json_array_get(r.result, 2));
                mp_exec_result_clear(&r);
        }
        return NULL;
}

TEST(parallel_calls) {
        enum { N = 8 };
        pthread_t t[N];
        struct par p[N];
        executor();
        for (int i = 0; i < N; i++) {
                p[i] = (struct par) { .i = i };
                pthread_create(&t[i], NULL, par_call, &p[i]);
        }
        for (int i = 0; i < N; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < N; i++) {
                CHECK_INT(p[i].status, ==, MP_EXEC_OK);
                CHECK_INT(p[i].value, ==, i * i);
        }
        /* The calls ran side by side (4 channels), not one after another: some two of
         * them slept at the same time. (Behaviour, not a timing: a loaded machine makes
         * them slower, not serial.) */
        int overlaps = 0;
        for (int i = 0; i < N; i++)
                for (int j = i + 1; j < N; j++)
                        overlaps += p[i].from < p[j].to && p[j].from < p[i].to;
        CHECK_INT(overlaps, >, 0);
}

TEST(latency) {
        struct mp_exec_result r;
        int64_t t0 = mp_mono_ms();
        for (int i = 0; i < 10; i++) {
                REQUIRE(run("def main():\n    return 1\n", NULL, &r) == 0);
                CHECK_INT(r.status, ==, MP_EXEC_OK);
                mp_exec_result_clear(&r);
        }
        printf("  per call (sandbox + python start + call): %.1f ms\n", (double) (mp_mono_ms() - t0) / 10.0);
}


TEST(stop_and_dead_executor) {
        struct mp_exec_result r;
        struct mp_error err = { 0 };
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = "def main():\n    return 1\n", .handler = "main",
                                       .limits = small };
        mp_executor_stop(ex);
        ex = NULL;
        /* A fresh executor, then kill it from outside: a call errors, never hangs. */
        struct mp_executor *e2;
        struct mp_exec_config cfg = { .sandbox = true, .python = "/usr/bin/python3", .channels = 1 };
        REQUIRE(mp_executor_start(&cfg, &e2, &err) == 0);
        REQUIRE(mp_executor_run(e2, &req, &r, &err) == 0);
        mp_exec_result_clear(&r);
        pid_t pid = executor_pid();
        REQUIRE(pid > 0);
        kill(pid, SIGKILL);
        usleep(50000);
        CHECK_INT(mp_executor_run(e2, &req, &r, &err), <, 0);
        CHECK(strstr(err.message, "executor"));
        mp_error_clear(&err);
        mp_executor_stop(e2);
}

/* ---- results bounded before they become trees (MP_MAX_RESULT_DEPTH, _ELEMENTS) ---- */

/* Values jansson builds for a tree (object keys are not values). */
static size_t tree_values(json_t *j) {
        size_t n = 1, i;
        const char *k;
        json_t *v;
        if (json_is_array(j))
                json_array_foreach(j, i, v) n += tree_values(v);
        else if (json_is_object(j))
                json_object_foreach(j, k, v) n += tree_values(v);
        return n;
}

TEST(json_scan_counts) {
        static const struct {
                const char *text;
                unsigned depth;
                size_t values;
        } cases[] = {
                { "5", 0, 1 },
                { "[]", 1, 1 },
                { "[[]]", 2, 2 },
                { " [ 1 , 2 ] ", 1, 3 },
                { "[-1.5e+3,true,false,null]", 1, 5 },
                { "{\"a\":1,\"b\":[1,2,{\"c\":null}]}", 3, 7 },
                { "{\"k\": \"v\", \"x\": {}}", 2, 3 },
                /* brackets, braces, commas and escaped quotes inside strings are text */
                { "[\"a]\\\"[,{\", \"{\\\\\"]", 1, 3 },
                { "{\"[[[\":{\"}}}\":\"]]]\"}}", 2, 3 },
                { "[\"\\u0000\",\"\\\\\",{}]", 2, 4 },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                unsigned depth = 99;
                size_t values = 0;
                enum mp_json_shape sh = mp_exec_json_scan(cases[i].text, strlen(cases[i].text), 64, 1000, &depth, &values);
                CHECK_INT(sh, ==, MP_JSON_FITS);
                CHECK_INT(depth, ==, cases[i].depth);
                CHECK_INT(values, ==, cases[i].values);
                /* what the scan counts is what a parser builds */
                json_t *j = json_loadb(cases[i].text, strlen(cases[i].text), JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                REQUIRE(j);
                CHECK_INT(tree_values(j), ==, values);
                json_decref(j);
        }
}

/* "[[],[],...]" with n inner lists, or n lists nested in one another. */
static char *wide(size_t n) {
        char *t = malloc(3 * n + 2), *p = t;
        *p++ = '[';
        for (size_t i = 0; i < n; i++)
                p += sprintf(p, i ? ",[]" : "[]");
        *p++ = ']';
        *p = 0;
        return t;
}
static char *deep(size_t n) {
        char *t = malloc(2 * n + 1);
        memset(t, '[', n);
        memset(t + n, ']', n);
        t[2 * n] = 0;
        return t;
}

TEST(json_scan_bounds) {
        /* The reply of `[[]]*4_000_000`: 12 MB of text, refused on the bytes. */
        _cleanup_free_ char *w = wide(4000000);
        size_t values = 0;
        CHECK_INT(mp_exec_json_scan(w, strlen(w), MP_MAX_RESULT_DEPTH, MP_MAX_RESULT_ELEMENTS, NULL, &values), ==,
                  MP_JSON_TOO_MANY);
        CHECK_INT(values, ==, MP_MAX_RESULT_ELEMENTS + 1); /* it stopped there */
        enum mp_json_shape sh = MP_JSON_FITS;
        CHECK(mp_exec_json_load(w, strlen(w), MP_MAX_RESULT_DEPTH, MP_MAX_RESULT_ELEMENTS, &sh) == NULL);
        CHECK_INT(sh, ==, MP_JSON_TOO_MANY);

        /* Exactly at the depth limit fits; one more level does not. */
        _cleanup_free_ char *d64 = deep(MP_MAX_RESULT_DEPTH), *d65 = deep(MP_MAX_RESULT_DEPTH + 1);
        unsigned depth = 0;
        CHECK_INT(mp_exec_json_scan(d64, strlen(d64), MP_MAX_RESULT_DEPTH, 1000, &depth, NULL), ==, MP_JSON_FITS);
        CHECK_INT(depth, ==, MP_MAX_RESULT_DEPTH);
        CHECK_INT(mp_exec_json_scan(d65, strlen(d65), MP_MAX_RESULT_DEPTH, 1000, NULL, NULL), ==, MP_JSON_TOO_DEEP);
        json_t *j = mp_exec_json_load(d65, strlen(d65), MP_MAX_RESULT_DEPTH, 1000, &sh);
        CHECK(j == NULL);
        CHECK_INT(sh, ==, MP_JSON_TOO_DEEP);
        j = mp_exec_json_load(d64, strlen(d64), MP_MAX_RESULT_DEPTH, 1000, &sh);
        CHECK(j != NULL);
        CHECK_INT(sh, ==, MP_JSON_FITS);
        json_decref(j);
        /* not JSON at all */
        CHECK(mp_exec_json_load("[1,", 3, 8, 8, &sh) == NULL);
        CHECK_INT(sh, ==, MP_JSON_INVALID);
}

TEST(json_scan_engineering_table_fits) {
        /* A 100,000 x 15 table of numbers (as rows) is well inside the bounds. */
        size_t rows = 100000, cols = 15;
        _cleanup_free_ char *t = malloc(rows * (cols * 12 + 4) + 4);
        char *p = t;
        *p++ = '[';
        for (size_t r = 0; r < rows; r++) {
                *p++ = r ? ',' : '[';
                if (r)
                        *p++ = '[';
                for (size_t c = 0; c < cols; c++)
                        p += sprintf(p, c ? ",%zu.25" : "%zu.25", r + c);
                *p++ = ']';
        }
        *p++ = ']';
        *p = 0;
        unsigned depth = 0;
        size_t values = 0;
        CHECK_INT(mp_exec_json_scan(t, strlen(t), MP_MAX_RESULT_DEPTH, MP_MAX_RESULT_ELEMENTS, &depth, &values), ==,
                  MP_JSON_FITS);
        CHECK_INT(depth, ==, 2);
        CHECK_INT(values, ==, 1 + rows + rows * cols);
}

/* The guest checks the same limits as base/limits.h before it answers. */
TEST(guest_limits_agree) {
        char line[96];
        snprintf(line, sizeof(line), "MAX_RESULT_DEPTH = %d ", MP_MAX_RESULT_DEPTH);
        CHECK(strstr(mp_guest_py, line));
        snprintf(line, sizeof(line), "MAX_ERROR_MESSAGE_BYTES = %u * 1024 ", MP_MAX_ERROR_MESSAGE_BYTES / 1024);
        CHECK(strstr(mp_guest_py, line));
        snprintf(line, sizeof(line), "MAX_TRACEBACK_BYTES = %u * 1024 ", MP_MAX_TRACEBACK_BYTES / 1024);
        CHECK(strstr(mp_guest_py, line));
        snprintf(line, sizeof(line), "MAX_ERROR_TYPE_BYTES = %d ", MP_MAX_NAME_LEN);
        CHECK(strstr(mp_guest_py, line));
        snprintf(line, sizeof(line), "MAX_PROGRESS_MESSAGE = %d ", MP_MAX_PROGRESS_MESSAGE);
        CHECK(strstr(mp_guest_py, line));
        snprintf(line, sizeof(line), "MAX_PROGRESS_FRAME = %d ", MP_MAX_PROGRESS_FRAME);
        CHECK(strstr(mp_guest_py, line));
}

static const char *estr(const struct mp_exec_result *r, const char *k) {
        return json_string_value(json_object_get(r->error, k)) ?: "";
}

TEST(run_result_too_complex) {
        struct mp_exec_result r;
        /* wide: the guest sends it (2.1 million empty lists, 6 MB), the executor refuses */
        REQUIRE(run("def main():\n    return [[]] * 2100000\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_LIMIT);
        CHECK_STR(estr(&r, "type"), "ResultTooComplex");
        CHECK_STR(estr(&r, "limit"), "result_elements");
        CHECK(strstr(estr(&r, "message"), "2000000 values"));
        CHECK(r.result == NULL);
        mp_exec_result_clear(&r);
        /* deep: the guest refuses it itself */
        REQUIRE(run("def main():\n    v = []\n    for i in range(100):\n        v = [v]\n    return v\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_LIMIT);
        CHECK_STR(estr(&r, "type"), "ResultTooComplex");
        CHECK_STR(estr(&r, "limit"), "result_depth");
        mp_exec_result_clear(&r);
        /* deep, written by user code straight on the guest's socket: the executor refuses */
        REQUIRE(run("import os, struct\ndef main():\n"
                    "    d = ('{\"status\":\"ok\",\"result\":' + '[' * 70 + ']' * 70 + '}').encode()\n"
                    "    os.write(3, struct.pack('<I', len(d)) + d)\n    os._exit(0)\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_LIMIT);
        CHECK_STR(estr(&r, "type"), "ResultTooComplex");
        CHECK_STR(estr(&r, "limit"), "result_depth");
        CHECK(strstr(estr(&r, "message"), "64 levels"));
        mp_exec_result_clear(&r);
        /* at the limit: returned as it is */
        REQUIRE(run("def main():\n    v = []\n    for i in range(63):\n        v = [v]\n    return v\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        mp_exec_result_clear(&r);
}

TEST(run_error_message_capped) {
        struct mp_exec_result r;
        REQUIRE(run("def main():\n    raise ValueError('m' * 10000000)\n", NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        CHECK_STR(estr(&r, "type"), "ValueError");
        const char *m = estr(&r, "message"), *tb = estr(&r, "traceback");
        CHECK_INT(strlen(m), <=, MP_MAX_ERROR_MESSAGE_BYTES);
        if (!strstr(m, "[truncated: 10000000 bytes in all, the first 16288 kept]"))
                CHECK_FAIL("message ends: %s", m + (strlen(m) > 80 ? strlen(m) - 80 : 0));
        CHECK(strncmp(m, "mmmm", 4) == 0);
        CHECK_INT(strlen(tb), <=, MP_MAX_TRACEBACK_BYTES);
        CHECK(strstr(tb, "line 2, in main"));
        CHECK(strstr(tb, "[truncated: "));
        mp_exec_result_clear(&r);
        /* the same written by user code straight on the socket: the executor caps it,
         * at a character boundary (é is two bytes) */
        REQUIRE(run("import os, struct, json\ndef main():\n"
                    "    e = {'type': 'T' * 1000, 'message': 'x' + '\\u00e9' * 500000, 'traceback': 'y' * 1000000}\n"
                    "    d = json.dumps({'status': 'error', 'error': e}).encode()\n"
                    "    os.write(3, struct.pack('<I', len(d)) + d)\n    os._exit(0)\n",
                    NULL, &r) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_ERROR);
        m = estr(&r, "message");
        CHECK_INT(strlen(m), <=, MP_MAX_ERROR_MESSAGE_BYTES);
        if (!strstr(m, "[truncated: 1000001 bytes in all, the first 16287 kept]"))
                CHECK_FAIL("message ends: %s", m + (strlen(m) > 80 ? strlen(m) - 80 : 0));
        CHECK_INT(strlen(estr(&r, "traceback")), <=, MP_MAX_TRACEBACK_BYTES);
        CHECK_INT(strlen(estr(&r, "type")), <=, MP_MAX_NAME_LEN);
        mp_exec_result_clear(&r);
}

/* Live updates: progress and the logs printed so far reach the request's callback
 * while the call runs (a call of 5 s, updates at most every 0.5 s), the last progress
 * before the reply; the reply's logs are all of them, as before. */
struct live_seen {
        struct mp_buf logs;
        double last;
        char message[64];
        int updates;
};

static void on_live(void *ctx, const struct mp_exec_live *l) {
        struct live_seen *s = ctx;
        s->updates++;
        if (l->has_progress) {
                s->last = l->fraction;
                snprintf(s->message, sizeof(s->message), "%s", l->message);
        }
        (void) mp_buf_append(&s->logs, l->logs, l->logs_len);
}

TEST(run_live_progress_and_logs) {
        struct live_seen seen = { 0 };
        struct mp_exec_result r = { 0 };
        struct mp_error err = { 0 };
        static const char code[] =
                "import time\nfrom mecapy import progress\n"
                "def main():\n"
                "    print('first line')\n"
                "    progress(0.25, 'quarter')\n"
                "    for i in range(50):\n"
                "        time.sleep(0.1)\n"
                "        progress(0.5, 'half')\n"
                "    print('last line')\n"
                "    progress(1.0, 'done')\n"
                "    return 7\n";
        json_t *in = json_object();
        struct mp_exec_request req = { .op = MP_EXEC_RUN, .code = code, .handler = "main", .inputs = in,
                                       .limits = small, .on_live = on_live, .live_ctx = &seen };
        REQUIRE(mp_executor_run(executor(), &req, &r, &err) == 0);
        CHECK_INT(r.status, ==, MP_EXEC_OK);
        CHECK_INT(json_integer_value(r.result), ==, 7);
        /* 5 s of a call that reports every 0.1 s: updates came while it ran. */
        CHECK_INT(seen.updates, >=, 2);
        CHECK(seen.last == 1.0);
        CHECK_STR(seen.message, "done");
        /* What came live is the start of the reply's logs, which hold everything. */
        CHECK_STR(r.logs, "first line\nlast line\n");
        CHECK(seen.logs.len <= r.logs_len && !memcmp(seen.logs.data ? seen.logs.data : "", r.logs, seen.logs.len));
        CHECK(seen.logs.len >= strlen("first line\n"));
        mp_exec_result_clear(&r);
        mp_buf_free(&seen.logs);
        json_decref(in);
}

static const struct check_case cases[] = {
        CASE(json_scan_counts),
        CASE(json_scan_bounds),
        CASE(json_scan_engineering_table_fits),
        CASE(guest_limits_agree),
        CASE(run_result_too_complex),
        CASE(run_error_message_capped),
        CASE(run_numbers),
        CASE(run_numpy_conversion),
        CASE(run_nan_becomes_null),
        CASE(run_unserialisable_result),
        CASE(run_exception_user_traceback),
        CASE(run_stdout_captured),
        CASE(run_artifact),
        CASE(run_artifact_folders),
        CASE(run_missing_handler),
        CASE(run_syntax_error),
        CASE(run_bad_request_rejected),
        CASE(analyze_schema),
        CASE(analyze_numpy_docstring_kwargs),
        CASE(analyze_syntax_error),
        CASE(analyze_missing_handler),
        CASE(analyze_forbidden_import_and_eval),
        CASE(analyze_hostile_nesting),
        CASE(parallel_calls),
        CASE(latency),
        CASE(run_live_progress_and_logs),
        CASE(stop_and_dead_executor),
};

CHECK_MAIN(cases)
